// The pages' own words in English and Korean, and the switch between them.
//
// English is the source, as in the command line's gettext catalogue: an element marked
// data-i18n keeps its English text as the key, and KO gives the Korean (the seeds' terms:
// 특징 맵, 합성곱, 커널, 수용 영역, as cnnlab/locale/ko/LC_MESSAGES/cnnlab.po uses them).
// Text the scripts build calls tr("English"), so a missing Korean entry shows the English.
// The language: ?lang=ko|en (then remembered), else the last choice (localStorage), else the
// browser's (navigator.language). Offline: nothing is fetched.
"use strict";

const LANGUAGES = ["en", "ko"];
const STORAGE_KEY = "cnnlab.lang";

const KO = {
  // the drawing page (index.html, app.js)
  "cnnlab: draw and watch the network think": "cnnlab: 그리고 신경망이 생각하는 모습 보기",
  "loading the model\u2026": "모델을 불러오는 중\u2026",
  "Draw or drop an image": "그림을 그리거나 이미지를 끌어다 놓으세요",
  "Clear": "지우기",
  "brush": "붓",
  "ink": "잉크",
  "centre like MNIST": "MNIST처럼 가운데 맞춤",
  "invert": "반전",
  "Drop an image here, or": "여기에 이미지를 놓거나",
  "choose a file": "파일 선택",
  "Prediction": "예측",
  "What the network sees": "신경망이 보는 입력",
  "Where it looked (Grad-CAM)": "모델이 본 곳 (Grad-CAM)",
  "Every layer's output": "모든 층의 출력 (특징 맵)",
  "Each channel is scaled on its own: its smallest value black, its largest white.":
    "채널마다 따로 크기를 맞춥니다: 가장 작은 값은 검정, 가장 큰 값은 흰색.",
  "The model, layer by layer": "층별로 본 모델",
  "The run's report (curves, confusion matrix, scores, filters, projector):":
    "실행 보고서 (학습 곡선, 혼동 행렬, 점수, 필터, 프로젝터):",
  "layer": "층",
  "output": "출력",
  "how the size comes about": "크기가 나오는 과정",
  "params": "파라미터",
  "total": "합계",
  "all": "전체",
  "input": "입력",
  "classes": "클래스",
  "test accuracy": "테스트 정확도",
  "engine": "엔진",
  "Your drawing ({drawing}) is resized to {input} on the server.":
    "그린 그림({drawing})은 서버에서 {input} 크기로 줄여집니다.",
  "The uploaded file {name} ({size}) is resized to {input} on the server.":
    "올린 파일 {name}({size})은 서버에서 {input} 크기로 바뀝니다.",
  "size unknown": "크기 모름",
  // one cell worked out (index.html's panel, cell.js; the words of `cnnlab explain cell`)
  "Click any cell of a map to see how its number came about.":
    "맵의 칸을 누르면 그 숫자가 어떻게 나왔는지 볼 수 있습니다.",
  "How this number came about": "이 숫자가 나온 과정",
  "back": "뒤로",
  "Click a cell of the window to go one layer down.": "윈도우의 칸을 누르면 한 층 아래로 내려갑니다.",
  "it reads {name} (layer {index}, {shape}), one layer down": "한 층 아래 {name} (층 {index}, {shape})의 값을 읽습니다",
  "channel {n} of {below}: {where}": "{below}의 채널 {n}: {where}",
  "rows {rows}, columns {cols}": "행 {rows}, 열 {cols}",
  "{mode} pooling": "{mode} 풀링",
  "global {mode} pooling: the whole map of channel {n}": "전역 {mode} 풀링: 채널 {n}의 맵 전체",
  "the {shown} largest of {count} products input x weight": "입력 x 가중치 곱 {count}개 중 가장 큰 {shown}개",
  "the other {count} products, added up": "나머지 곱 {count}개의 합",
  "sum over channels": "채널 합",
  "sum of the products": "곱의 합",
  "plus the bias": "편향 더하기",
  "the block's layers' output plus its input": "블록 안 층들의 출력에 입력 더하기",
  "the block's layers' output plus its shortcut's output": "블록 안 층들의 출력에 지름길의 출력 더하기",
  "batchnorm with the running statistics (eval mode): (x - mean)/sqrt(var + eps) x gamma + beta":
    "배치 정규화, 학습 중 모은 통계로 (평가 모드): (x - mean)/sqrt(var + eps) x gamma + beta",
  "activation {function}": "활성화 함수 {function}",
  "softmax: exp of this value over the sum of the exps of all {count}":
    "소프트맥스: 이 값의 exp를 {count}개 값 모두의 exp 합으로 나눔",
  "the input pixel, normalised as in training": "입력 픽셀, 학습 때처럼 정규화",
  "dropout is off when predicting: the value passes unchanged": "드롭아웃은 예측할 때 꺼집니다: 값이 그대로 지나갑니다",
  "flatten: value {i} is cell [{c}][{y}][{x}] of the maps (c x H*W + y x W + x)":
    "flatten: 값 {i}은(는) 특징 맵의 칸 [{c}][{y}][{x}]입니다 (c x H*W + y x W + x)",
  "total: {total}; torch's output at this cell: {value} ({verdict})": "합계: {total}; 이 칸의 torch 출력: {value} ({verdict})",
  "agrees with torch": "torch와 일치",
  "DIFFERS from torch": "torch와 다릅니다",
  "window": "윈도우",
  "kernel": "커널",
  "products": "곱",
  "index": "번호",
  "weight": "가중치",
  "exp(z - max)": "exp(z - 최댓값)",
  // the run report (run.html, run.js)
  "cnnlab: run report": "cnnlab: 실행 보고서",
  "loading the run\u2026": "실행을 불러오는 중\u2026",
  "draw and predict": "그리고 예측하기",
  "run report": "실행 보고서",
  "Training curves": "학습 곡선",
  "one point per epoch, from the run's metrics.csv": "에폭마다 점 하나, 실행의 metrics.csv에서",
  "Confusion matrix": "혼동 행렬",
  "evaluating the test split\u2026": "테스트 데이터를 평가하는 중\u2026",
  "rows: true class, columns: predicted; shade: share of the row. Click a cell to see its images":
    "행: 실제 클래스, 열: 예측; 색의 진하기: 행에서 차지하는 비율. 칸을 누르면 그 이미지들을 봅니다",
  "Scores per class": "클래스별 점수",
  "the numbers of": "다음 명령의 숫자:",
  "loss": "손실",
  "accuracy": "정확도",
  "learning rate": "학습률",
  "train": "학습",
  "validation": "검증",
  "lr": "학습률",
  "epoch": "에폭",
  "true \u2193  predicted \u2192": "실제 \u2193  예측 \u2192",
  "class": "클래스",
  "precision": "정밀도",
  "recall": "재현율",
  "support": "이미지 수",
  "channel": "채널",
  "Filters of the first conv layer": "첫 합성곱 층의 필터 (커널)",
  "blue negative, white 0, red positive, one scale for the layer (RGB filters: each input channel as its colour, grey 0)":
    "파랑 음수, 흰색 0, 빨강 양수, 층 전체에 하나의 눈금 (RGB 필터: 입력 채널마다 그 색, 회색 0)",
  "What the filters respond to": "필터가 반응하는 것",
  "For each channel of": "다음 층의 채널마다:",
  ": the test images whose largest activation is largest, each cropped to the window of input pixels behind it (its receptive field; grey: padding outside the image).":
    ": 가장 큰 활성값이 가장 큰 테스트 이미지들, 각각 그 값 뒤의 입력 픽셀 창(수용 영역)으로 잘라냄 (회색: 이미지 밖의 패딩).",
  "Projector": "프로젝터",
  "each test image's penultimate features (the input of the last fc layer), by PCA; a ring: misclassified. Hover a point to see its image":
    "테스트 이미지마다 끝에서 두 번째 특징 (마지막 fc 층의 입력)을 PCA로; 고리: 오분류. 점 위에 마우스를 올리면 이미지를 봅니다",
};

const DICTIONARIES = { en: {}, ko: KO };

function languageFromUrl() {
  const asked = new URLSearchParams(window.location.search).get("lang");
  return LANGUAGES.includes(asked) ? asked : null;
}

function storedLanguage() {
  try {
    const stored = window.localStorage.getItem(STORAGE_KEY);
    return LANGUAGES.includes(stored) ? stored : null;
  } catch (error) {
    return null; // storage blocked (private mode, file://): the choice lasts for the page
  }
}

function browserLanguage() {
  const code = (navigator.language || "en").toLowerCase().split("-")[0];
  return LANGUAGES.includes(code) ? code : "en";
}

function remember(language) {
  try {
    window.localStorage.setItem(STORAGE_KEY, language);
  } catch (error) {
    // nothing to do: see storedLanguage
  }
}

let pageLanguage = languageFromUrl() || storedLanguage() || browserLanguage();
if (languageFromUrl()) remember(pageLanguage);

// The text in the page's language ("English" is the key; the English itself when no entry).
function tr(english) {
  return DICTIONARIES[pageLanguage][english] || english;
}

// tr with {name} fields filled from `fields`: trf("{n} images", { n: 3 }).
function trf(english, fields) {
  return tr(english).replace(/\{(\w+)\}/g, (whole, name) => (name in fields ? String(fields[name]) : whole));
}

const squeeze = (text) => text.replace(/\s+/g, " ").trim();

// Every data-i18n element shows its English (kept in data-en the first time) in the language.
function translatePage() {
  document.documentElement.lang = pageLanguage;
  for (const node of document.querySelectorAll("[data-i18n]")) {
    if (node.dataset.en === undefined) node.dataset.en = squeeze(node.textContent);
    const english = node.dataset.en;
    const shown = squeeze(node.textContent);
    if (shown !== english && shown !== KO[english]) continue; // a script has written it since
    node.textContent = tr(english);
  }
  const title = document.querySelector("title");
  if (title.dataset.en === undefined) title.dataset.en = title.textContent;
  document.title = tr(title.dataset.en);
  const picker = document.getElementById("lang");
  if (picker) picker.value = pageLanguage;
}

// Choose a language: remember it, translate the page now, and tell the scripts (they redraw
// their own text on the "cnnlab:language" event when they have some).
function setLanguage(language) {
  if (!LANGUAGES.includes(language)) return;
  pageLanguage = language;
  remember(language);
  const url = new URL(window.location.href);
  if (url.searchParams.has("lang")) {
    url.searchParams.set("lang", language);
    window.history.replaceState(null, "", url);
  }
  translatePage();
  document.dispatchEvent(new CustomEvent("cnnlab:language", { detail: language }));
}

function currentLanguage() {
  return pageLanguage;
}

translatePage();
document.getElementById("lang")?.addEventListener("change", (event) => setLanguage(event.target.value));
