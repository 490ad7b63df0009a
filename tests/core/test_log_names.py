"""A file name with control characters or ANSI escapes reaches the pipeline's log as one escaped line."""

from __future__ import annotations

import doctest
import logging

from calmops.core import logs
from calmops.core.logs import RunLog, pipeline_logger, printable

EVIL = "evil\nname\x1b[31m.csv"
ESCAPED = r"evil\nname\x1b[31m.csv"


def _lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_pipeline_log_record_with_an_evil_name_is_one_escaped_line(tmp_path):
    logger = pipeline_logger("evil-names", tmp_path)
    logger.warning("rejected %s: %s (moved to %s)", EVIL, f"{EVIL}: cannot be parsed", "quarantine/x")
    lines = _lines(tmp_path / "pipeline.log")
    assert len(lines) == 1, lines
    assert "\x1b" not in lines[0] and "\r" not in lines[0]
    assert f"rejected {ESCAPED}: {ESCAPED}: cannot be parsed (moved to quarantine/x)" in lines[0]


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_run_log_escapes_for_the_file_and_for_prefect(tmp_path):
    log = RunLog("evil-runlog", tmp_path)  # outside a flow run: the "calmops" logger stands in for Prefect's
    kept, level = _Keep(), log.prefect.level
    log.prefect.addHandler(kept)
    log.prefect.setLevel(logging.INFO)
    try:
        log.info("processing %s (sha256 %s…) for pipeline %s", EVIL, "ab" * 6, "evil-runlog")
        log.error("run failed for %s: %s", "ok\u202e.csv", "line one\r\nline two\x07")
        log.warning("%d%% of %s", 100, "x\ty")
        log.info("no args: %s stays")
        log.info("a format that does not fit: %d", "x\x1b")  # logged anyway, never raised
    finally:
        log.prefect.removeHandler(kept)
        log.prefect.setLevel(level)
    lines = _lines(tmp_path / "pipeline.log")
    assert len(lines) == 5, lines
    assert not any(c in "".join(lines) for c in "\x1b\r\x07\u202e\t")
    assert f"processing {ESCAPED} (sha256 abababababab…)" in lines[0]
    assert r"run failed for ok\u202e.csv: line one\r\nline two\x07" in lines[1]
    assert r"100% of x\ty" in lines[2] and "no args: %s stays" in lines[3]
    assert r"a format that does not fit: %d ('x\x1b',)" in lines[4]
    sent = [r.getMessage() for r in kept.records if r.name == "calmops"]
    assert len(sent) == 5 and ESCAPED in sent[0] and "\x1b" not in "".join(sent) and "\n" not in "".join(sent)


def test_printable_leaves_printable_text_alone():
    assert printable("données 2024-06 (copy).csv") == "données 2024-06 (copy).csv"
    assert printable(EVIL) == ESCAPED
    assert printable(printable(EVIL)) == ESCAPED  # applying it twice changes nothing more


def test_docstring_example():
    result = doctest.testmod(logs)
    assert result.attempted > 0 and result.failed == 0
