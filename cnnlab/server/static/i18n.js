// The pages' own words in the page's language, and the switch between languages.
//
// English is the source, as in the command line: an element marked data-i18n keeps its English
// text as the key (data-i18n-title: its tooltip), and text the scripts build calls
// tr("English") or trf("English {field}", {field}); constants read later are marked N_("...").
// The translations are not here: they come from the one gettext catalogue
// (cnnlab/locale/ko/LC_MESSAGES/cnnlab.po; the keys listed in cnnlab/server/page_text.py),
// which the server sends as /api/i18n.js, loaded before this file: DICTIONARIES_FROM_SERVER.
// A text without an entry shows its English.
// The language: ?lang=ko|en (then remembered), else the last choice (localStorage), else the
// browser's (navigator.language). Nothing is fetched from outside the server.
// The server answers each request in the language it asks for (cnnlab/server/language.py):
// apiFetch() asks every API call in the page's language, so the server's own messages (an
// upload it cannot read, a limit) and the words its answers carry come in it too.
"use strict";

const SERVED = typeof DICTIONARIES_FROM_SERVER === "object" ? DICTIONARIES_FROM_SERVER : {};
const DICTIONARIES = { ...SERVED, en: {} };
const LANGUAGES = ["en", ...Object.keys(SERVED).filter((language) => language !== "en")];
const STORAGE_KEY = "cnnlab.lang";

// Marks a constant's English for page_text.py's list; translate it where it is shown: tr(CONSTANT).
const N_ = (english) => english;

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
    if (!LANGUAGES.some((language) => shown === (DICTIONARIES[language][english] || english))) {
      continue; // a script has written it since
    }
    node.textContent = tr(english);
  }
  for (const node of document.querySelectorAll("[data-i18n-title]")) {
    if (node.dataset.enTitle === undefined) node.dataset.enTitle = node.title;
    node.title = tr(node.dataset.enTitle);
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

// An API address with ?lang= the page's language (which wins over the browser's
// Accept-Language on the server): "/api/predict?top_k=5" -> "/api/predict?top_k=5&lang=ko".
function inPageLanguage(url) {
  const address = new URL(url, window.location.origin);
  address.searchParams.set("lang", pageLanguage);
  return address.pathname + address.search;
}

// fetch() of an API address, asked in the page's language.
function apiFetch(url, options) {
  return fetch(inPageLanguage(url), options);
}

translatePage();
document.getElementById("lang")?.addEventListener("change", (event) => setLanguage(event.target.value));
