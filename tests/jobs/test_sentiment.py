import pytest

from lmdemo.jobs import sentiment
from lmdemo.errors import InputError


def test_clear_cases_are_right(prepared):
    texts = ["I absolutely love this phone, best purchase this year!",
             "Terrible service, the courier lost my parcel and nobody answered.",
             "Not bad at all, I would happily stay here again.",
             "It looked great in the photos but fell apart in a week. Returning it."]
    got = [r.label for r in sentiment.classify(texts)]
    assert got == ["positive", "negative", "positive", "negative"]


def test_scores_are_probabilities(prepared):
    (r,) = sentiment.classify("The film was wonderful.")
    assert set(r.scores) == {"negative", "positive"}
    assert abs(sum(r.scores.values()) - 1) < 1e-4 and r.score == max(r.scores.values()) > 0.5


def test_heldout_accuracy_reaches_target(prepared):
    rows = sentiment.load_split("heldout")
    preds = sentiment.classify([r["text"] for r in rows])
    accuracy = sum(p.label == r["label"] for p, r in zip(preds, rows)) / len(rows)
    assert len(rows) >= 300 and accuracy >= 0.90, accuracy


def test_splits_do_not_overlap():
    norm = lambda t: " ".join(t.lower().split())  # noqa: E731
    train = {norm(r["text"]) for r in sentiment.load_split("train")}
    heldout = {norm(r["text"]) for r in sentiment.load_split("heldout")}
    assert len(train) >= 1000 and not train & heldout


def test_read_texts_txt_and_csv(tmp_path):
    (tmp_path / "a.txt").write_text("good\n\nbad\n")
    assert sentiment.read_texts(tmp_path / "a.txt") == ["good", "bad"]
    (tmp_path / "b.csv").write_text("id,review\n1,nice\n2,awful\n")
    assert sentiment.read_texts(tmp_path / "b.csv") == ["1", "2"]  # no `text` column: the first one
    assert sentiment.read_texts(tmp_path / "b.csv", column="review") == ["nice", "awful"]
    (tmp_path / "c.csv").write_text("text,stars\n\"great, really\",5\n")
    assert sentiment.read_texts(tmp_path / "c.csv") == ["great, really"]


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"\x00\x01\x02binary", "binary"),
                                              (b"caf\xe9 ok\n", "not UTF-8")])
def test_bad_files_get_clear_errors(tmp_path, content, message):
    path = tmp_path / "f.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        sentiment.read_texts(path)


def test_oversized_file_and_missing_column(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    path.write_text("text\n" + "x\n" * 100)
    monkeypatch.setattr(sentiment, "MAX_FILE_BYTES", 50)
    with pytest.raises(InputError, match="limit"):
        sentiment.read_texts(path)
    monkeypatch.undo()
    with pytest.raises(InputError, match="no column 'review'"):
        sentiment.read_texts(path, column="review")


def test_empty_input_and_csv_output(prepared, tmp_path):
    with pytest.raises(InputError, match="No text"):
        sentiment.classify(["  ", ""])
    out = sentiment.to_csv(sentiment.classify(["lovely", "awful"]), tmp_path / "r.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "text,label,score" and lines[1].startswith("lovely,positive,")
