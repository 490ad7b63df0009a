"""Two people (or two scripts) pausing and resuming a pipeline at the same moment: one pause wins whole, one
resume ends it, and a state file written by two writers at once is one of them whole, never a mix."""

import threading
from concurrent.futures import ThreadPoolExecutor

from calmops.core import pause
from calmops.core.store import write_atomic

N = 8


def _at_once(call, args_list):
    start = threading.Barrier(len(args_list))

    def go(args):
        start.wait()
        return call(*args)

    with ThreadPoolExecutor(len(args_list)) as pool:
        return list(pool.map(go, args_list))


def test_of_pauses_at_the_same_moment_one_pauses_and_the_others_are_told_its_reason(calmops_home):
    for _ in range(5):
        results = _at_once(pause.pause, [("sea", f"reason {i}") for i in range(N)])
        winners = [made for made, paused_now in results if paused_now]
        assert len(winners) == 1
        assert pause.paused("sea") == winners[0]
        assert all(made == winners[0] for made, _ in results)  # the others see the pause that stands
        assert pause.resume("sea") == winners[0]


def test_of_resumes_at_the_same_moment_one_ends_the_pause(calmops_home):
    for _ in range(5):
        made, _ = pause.pause("sea", "under review")
        ended = _at_once(pause.resume, [("sea",)] * N)
        assert [p for p in ended if p is not None] == [made]
        assert pause.paused("sea") is None
    assert not [p.name for p in (calmops_home / "pipelines" / "sea").iterdir()]  # nothing left beside


def test_a_file_written_by_writers_at_once_holds_one_of_them_whole(tmp_path):
    target = tmp_path / "state.json"
    texts = [str(i) * 200_000 for i in range(N)]
    for _ in range(5):
        _at_once(write_atomic, [(target, text) for text in texts])
        assert target.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_file_written_whole_is_as_readable_as_any_file_the_user_makes(tmp_path):
    """A spec or state file written aside then renamed gets the permissions the umask gives a new file (a
    worker or viewer running as another user of the group reads it), not those of a private temporary file."""
    import os

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "spec.yaml", "name: sea\n")
        (tmp_path / "made.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "spec.yaml").stat().st_mode & 0o777 == (tmp_path / "made.txt").stat().st_mode & 0o777 == 0o644


def test_a_pause_file_that_is_not_text_or_a_link_to_nothing_still_pauses_and_resume_ends_it(calmops_home):
    """A hand-written pause file in another encoding, or a link whose target went: paused all the same (the
    safer reading), said with the file's name; `pause` answers with that pause, `resume` ends it."""
    path = pause.pause_file("sea")
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"since": "caf\xe9"}')
    held = pause.paused("sea")
    assert held.since == "?" and held.reason == f"{path} does not read as a pause; delete it to resume"
    assert pause.pause("sea", "again") == (held, False)
    assert pause.resume("sea") == held and pause.paused("sea") is None

    path.symlink_to(path.parent / "gone.json")
    held = pause.paused("sea")
    assert held.reason == f"{path} is a link to a file that does not exist; delete it to resume"
    assert pause.pause("sea", "again") == (held, False)  # answered, not tried over and over
    assert pause.resume("sea") == held and not path.is_symlink()


def test_a_pause_is_made_where_the_file_system_has_no_hard_links(calmops_home, monkeypatch):
    """Object-store mounts and some SMB shares refuse hard links: the pause is then created exclusively."""
    import errno
    import os

    def no_links(src, dst, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    made, now = pause.pause("sea", "under review")
    assert now and pause.paused("sea") == made
    assert pause.pause("sea", "another") == (made, False)
    assert [p.name for p in pause.pause_file("sea").parent.iterdir()] == ["paused.json"]
