"""The committer's promise: after fsync (or, with interval 0, after a change)
returns, the change is committed, even when a background commit ran while
the change was landing."""

import threading
import time
from types import SimpleNamespace

from archfs.mount.committer import Committer


class RecordingArchive:
    """Counts changes that landed and the ones the last commit made durable."""

    def __init__(self):
        self.landed = 0
        self.durable = 0
        self.lock = threading.Lock()

    def commit(self):
        with self.lock:
            changed = self.durable != self.landed
            self.durable = self.landed
            return changed


def _files():
    return SimpleNamespace(on_unsaved=None, on_change=None, unsaved=lambda: [],
                           maybe_retire=lambda entry: None,
                           copy_back_many=lambda entries, force=False: [])


def test_a_commit_between_the_notice_and_the_change_does_not_hide_it():
    archive = RecordingArchive()
    committer = Committer(archive, _files(), interval=1000)
    committer.note_change()   # a copy-back announces itself ...
    committer.commit()        # ... a background round commits before it lands ...
    archive.landed += 1       # ... then it lands,
    committer.commit()        # and the fsync that follows must commit it
    assert archive.durable == archive.landed


def test_a_change_reported_after_it_landed_is_committed_within_the_interval():
    archive = RecordingArchive()
    committer = Committer(archive, _files(), interval=0.05)
    committer.start()
    try:
        archive.landed += 1
        committer.after_change()
        deadline = time.monotonic() + 5
        while archive.durable != archive.landed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert archive.durable == archive.landed
    finally:
        assert committer.close() == []


def test_nothing_to_commit_is_not_counted():
    archive = RecordingArchive()
    committer = Committer(archive, _files(), interval=1000)
    committer.commit()
    assert committer.commits == 0
