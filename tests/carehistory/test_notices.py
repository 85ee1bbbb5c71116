"""pipeline.carehistory.notices: the feeds' notification rows a worker saw committed, so as not to insert them again."""

from __future__ import annotations

from pipeline.carehistory.notices import FeedNotices


def test_a_patient_seen_committed_for_a_feed_is_not_unseen_for_it_any_more_but_still_is_for_another_feed():
    notices = FeedNotices()
    assert notices.unseen("f1", ["p1", "p2"]) == {"p1", "p2"}
    notices.committed("f1", {"p1"})
    assert notices.unseen("f1", ["p1", "p2"]) == {"p2"}
    assert notices.unseen("f2", ["p1", "p2"]) == {"p1", "p2"}


def test_what_was_seen_is_forgotten_after_its_time():
    notices = FeedNotices(seconds=0)
    notices.committed("f1", {"p1"})
    assert notices.unseen("f1", ["p1"]) == {"p1"}


def test_only_the_latest_feeds_are_kept():
    notices = FeedNotices(feeds=2)
    for feed_id in ("f1", "f2", "f3"):
        notices.committed(feed_id, {"p1"})
    assert notices.unseen("f1", ["p1"]) == {"p1"}
    assert notices.unseen("f2", ["p1"]) == notices.unseen("f3", ["p1"]) == set()
