"""cnnlab.text: counts with their noun."""

from cnnlab.text import counted


def test_a_count_of_one_takes_the_singular_and_every_other_count_the_plural():
    assert counted(1, "epoch") == "1 epoch"
    assert [counted(n, "epoch") for n in (0, 2, 24)] == ["0 epochs", "2 epochs", "24 epochs"]
