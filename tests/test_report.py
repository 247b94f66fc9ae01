"""The run report (report.html and its PNGs) and the runs table, on small runs trained here."""

from __future__ import annotations

import csv
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from kit.cli import main
from kit.config import make_config
from kit.core.errors import KitError
from kit.data.load import load_test, load_train
from kit.data.split import run_split, to_float
from kit.report import gather
from kit.report import page as report_module
from kit.report.page import write_report
from kit.report.runs_table import list_runs
from kit.run.model import Model
from kit.run.predict import submit_run
from kit.run.train import train_run
from synthetic import train_argv, write_competition

UPLOAD_HEADER = ["date", "run_id", "file", "message", "status", "public_score", "ref"]


def small_config(**overrides):
    """A run that learns something but makes plenty of validation mistakes: 1-2 epochs of a tiny MLP."""
    values = dict(epochs=2, lr=0.01, hidden=(16,), batch_size=32, val_fraction=0.5, seed=3)
    values.update(overrides)
    return make_config("reference", **values)


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    return write_competition(tmp_path_factory.mktemp("data"), n_train=400, n_test=120)


@pytest.fixture(scope="module")
def reported(competition, tmp_path_factory):
    """A trained, submitted and reported run: (run folder, submissions folder, Report)."""
    root = tmp_path_factory.mktemp("run")
    run_dir = train_run(small_config(), competition / "train.csv", root / "models")
    submissions = root / "submissions"
    submit_run(run_dir, competition / "test.csv", submissions / "submission.csv")
    return run_dir, submissions, write_report(run_dir, submissions)


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.mistake_lines = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        if tag == "tr" and "data-line" in attrs:
            self.mistake_lines.append(
                (int(attrs["data-line"]), int(attrs["data-true"]), int(attrs["data-predicted"]))
            )


def parse(path: Path) -> Images:
    parser = Images()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def read_png(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_report_images_exist_have_their_size_and_are_not_blank(reported):
    run_dir, _, report = reported
    names = {p.name for p in report.images}
    assert names == {
        report_module.CURVES_PNG,
        report_module.CONFUSION_PNG,
        report_module.MISTAKES_PNG,
        report_module.UNSURE_PNG,
    }
    expected_width = {
        report_module.CURVES_PNG: 1300,
        report_module.CONFUSION_PNG: 1250,
        report_module.MISTAKES_PNG: 8 * 145,
        report_module.UNSURE_PNG: 8 * 145,
    }
    for path in report.images:
        pixels = read_png(path)
        assert pixels.shape[1] == expected_width[path.name], path.name
        assert pixels.shape[0] >= 300, path.name
        assert pixels[..., :3].std() > 0.05, f"{path.name} looks blank"
    # the galleries hold ceil(n / 8) rows of 1.75 inches
    assert read_png(run_dir / report_module.MISTAKES_PNG).shape[0] == round(
        175 * np.ceil(len(report.mistakes) / 8)
    )
    assert read_png(run_dir / report_module.UNSURE_PNG).shape[0] == round(
        175 * np.ceil(len(report.unsure) / 8)
    )


def test_report_html_names_every_image_and_each_exists(reported):
    run_dir, _, report = reported
    page = parse(report.path)
    assert report.path == run_dir / "report.html"
    assert sorted(page.sources) == sorted(p.name for p in report.images)
    for source in page.sources:
        assert (run_dir / source).is_file() and "/" not in source  # relative: opens from the file system
    text = report.path.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "Per class, from the confusion matrix" in text and "precision" in text


def test_mistakes_gallery_shows_only_real_mistakes_most_confident_first(reported, competition):
    run_dir, _, report = reported
    model = Model.load(run_dir / "model.npz")
    config = model.config
    dataset = load_train(competition / "train.csv")
    _, val_idx, _ = run_split(dataset.y, config.val_fraction, config.seed)
    x_val, y_val = to_float(dataset.x[val_idx]), dataset.y[val_idx]
    probs = model.predict_proba(x_val, tta=False)
    predicted = probs.argmax(axis=1)
    n_wrong = int(np.count_nonzero(predicted != y_val))
    assert n_wrong >= 36, "the fixture's run should make enough mistakes to fill the gallery"
    assert len(report.mistakes) == min(gather.MAX_MISTAKES, n_wrong) >= 36
    for m in report.mistakes:
        assert m["true"] == y_val[m["index"]] != predicted[m["index"]] == m["predicted"]
        assert m["confidence"] == pytest.approx(float(probs[m["index"]].max()))
    confidences = [m["confidence"] for m in report.mistakes]
    assert confidences == sorted(confidences, reverse=True)
    # the worst mistakes: no mistake left out is more confident than the least confident shown
    wrong_confidence = np.sort(probs[predicted != y_val].max(axis=1))[::-1]
    assert confidences[-1] == pytest.approx(float(wrong_confidence[len(confidences) - 1]))
    # the page's table lists the same rows, and each line of train.csv holds that label
    assert parse(report.path).mistake_lines == [
        (m["line"], m["true"], m["predicted"]) for m in report.mistakes
    ]
    lines = (competition / "train.csv").read_text().splitlines()
    for m in report.mistakes[:5]:
        assert int(lines[m["line"] - 1].split(",")[0]) == m["true"]


def test_least_sure_test_rows_are_the_lowest_top_probabilities(reported, competition):
    run_dir, submissions, report = reported
    assert json.loads((submissions / "submission.json").read_text())["test"] == str(competition / "test.csv")
    probs = Model.load(run_dir / "model.npz").predict_proba(to_float(load_test(competition / "test.csv").x))
    top = np.sort(probs.max(axis=1))
    assert len(report.unsure) == gather.N_UNSURE
    assert [u["p_first"] for u in report.unsure] == pytest.approx(top[: gather.N_UNSURE].tolist(), abs=1e-6)
    for u in report.unsure:
        row = probs[u["image_id"] - 1]
        assert u["first"] == row.argmax() and u["second"] == np.argsort(-row)[1]


def test_report_of_a_run_with_pieces_missing_says_what_is_missing(reported, tmp_path):
    run_dir, _, _ = reported
    old = tmp_path / "old-run"
    shutil.copytree(run_dir, old)
    for name in ("history.csv", "report.html", *(p.name for p in old.glob("report-*.png"))):
        (old / name).unlink()
    metrics = json.loads((old / "metrics.json").read_text())
    metrics["train_path"] = str(tmp_path / "moved" / "train.csv")
    (old / "metrics.json").write_text(json.dumps(metrics))
    report = write_report(old, tmp_path / "no-submissions")
    assert {p.name for p in report.images} == {report_module.CONFUSION_PNG}  # from metrics.json's matrix
    notes = " ".join(report.notes)
    assert "history.csv" in notes and "moved/train.csv" in notes and "no submission" in notes
    text = report.path.read_text()
    assert "Not shown" in text and "moved/train.csv" in text


@pytest.mark.slow  # trains two runs (> 2 s)
def test_report_of_an_older_run_without_members_machine_or_history_columns(reported, tmp_path):
    run_dir, _, _ = reported
    old = tmp_path / "older"
    shutil.copytree(run_dir, old)
    with open(run_dir / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(old / "history.csv", "w", newline="") as handle:  # no member, lr or seconds columns
        writer = csv.DictWriter(
            handle, fieldnames=["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
        )
        writer.writeheader()
        writer.writerows({k: row[k] for k in writer.fieldnames} for row in rows)
    metrics = json.loads((old / "metrics.json").read_text())
    for key in ("members", "machine", "train_path"):
        del metrics[key]
    (old / "metrics.json").write_text(json.dumps(metrics))
    report = write_report(old, tmp_path)
    assert report_module.CURVES_PNG in {p.name for p in report.images}
    assert read_png(old / report_module.CURVES_PNG)[..., :3].std() > 0.05
    assert "not recorded" in report.path.read_text()


def test_report_of_a_run_without_validation_rows_and_of_an_ensemble(competition, tmp_path):
    no_val = train_run(
        small_config(epochs=1, val_fraction=0.0), competition / "train.csv", tmp_path / "models"
    )
    report = write_report(no_val, tmp_path / "subs")
    assert {p.name for p in report.images} == {report_module.CURVES_PNG}
    assert any("VAL_FRACTION=0" in note for note in report.notes)

    ensemble = train_run(small_config(epochs=2, ensemble=2), competition / "train.csv", tmp_path / "models")
    report = write_report(ensemble, tmp_path / "subs")
    assert report_module.MISTAKES_PNG in {p.name for p in report.images}
    assert "member 2" in report.path.read_text()


def test_report_of_a_missing_folder_is_one_line(tmp_path, capsys):
    with pytest.raises(KitError, match="no such run folder"):
        write_report(tmp_path / "nope")
    assert main(["report", "--model", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow  # trains two runs through the CLI (> 2 s)
def test_train_writes_the_report_unless_told_not_to(competition, tmp_path, capsys):
    args = [
        *train_argv(competition / "train.csv", tmp_path / "m"),
        "--preset",
        "reference",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--val-fraction",
        "0.25",
    ]
    assert main(args) == 0
    run_dir = (tmp_path / "m" / "latest").resolve()
    assert f"report: {run_dir / 'report.html'}" in capsys.readouterr().out
    assert (run_dir / "report.html").is_file()
    assert main([*args, "--report", "0", "--seed", "1"]) == 0
    assert "report:" not in capsys.readouterr().out
    assert not ((tmp_path / "m" / "latest").resolve() / "report.html").exists()


def test_runs_table_joins_the_uploads_by_run_id(reported, competition, tmp_path, capsys):
    with pytest.raises(KitError, match="no runs there yet"):
        list_runs(tmp_path, tmp_path / "history.csv")
    run_dir, _, _ = reported
    models = run_dir.parent
    second = train_run(small_config(epochs=1, seed=5), competition / "train.csv", models)
    history = tmp_path / "history.csv"
    with open(history, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(UPLOAD_HEADER)
        writer.writerow(
            ["2026-11-28T10:00:00Z", run_dir.name, "submission.csv", "first", "complete", "0.91234", "1"]
        )
        writer.writerow(["2026-11-28T11:00:00Z", run_dir.name, "submission.csv", "again", "pending", "", "2"])
        writer.writerow(["2026-11-28T12:00:00Z", "some-other-run", "x.csv", "", "complete", "0.5", "3"])
    text, page = list_runs(models, history)
    lines = {line.split()[0]: line for line in text.splitlines()[2:]}
    assert set(lines) == {run_dir.name, second.name}
    assert lines[run_dir.name].endswith("0.91234")  # a later pending upload does not hide the score
    assert "0.9" not in lines[second.name].split()[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"{metrics['val_accuracy']:.4f}" in lines[run_dir.name]
    html_text = page.read_text()
    assert f'href="{run_dir.name}/report.html"' in html_text  # only the first run has a report
    assert f'href="{second.name}/report.html"' not in html_text and second.name in html_text
    assert "0.91234" in html_text
    # no history.csv yet: every run listed, no public scores
    text, _ = list_runs(models, tmp_path / "none.csv")
    assert "0.91234" not in text and "no uploads yet" in capsys.readouterr().out


@pytest.mark.slow
def test_report_opens_in_a_real_browser(reported, browser, tmp_path):
    from browser import console_errors

    _, _, report = reported
    driver = browser(width=1280, height=900)
    driver.get(report.path.as_uri())
    assert not console_errors(driver)
    widths = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
    )
    assert len(widths) == len(report.images)
    for source, complete, width in widths:
        assert complete and width > 0, source
    driver.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
