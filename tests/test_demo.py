"""The demo's words about a collapsed model (the run itself is CI's `forgery demo --quick`)."""

from __future__ import annotations

import json

from trainer.demo import _val_collapse


def test_a_collapsed_validation_is_said_in_words(tmp_path):
    log = tmp_path / "val.jsonl"
    assert _val_collapse(log) is None  # no validation at all: nothing to say
    lines = [{"step": 4, "collapsed": True, "collapsed_to": "real"}, {"step": 8, "collapsed": False}]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert _val_collapse(log) is None  # only the last validation counts
    log.write_text(log.read_text() + json.dumps({"step": 12, "collapsed": True, "collapsed_to": "fake"}) + "\n")
    assert _val_collapse(log) == "at step 12 validation called every image fake: the model collapsed to one class"



def test_the_demo_test_split_holds_at_least_three_photos():
    """The full demo's photos, cut by the shard builder's own rule, leave 3 photos or more for testing."""
    from forgery_synth.dataset.splits import assign_splits
    from trainer.demo import PLANS

    plan = PLANS["full"]
    splits = assign_splits([f"{i:064x}" for i in range(plan.photos)], plan.splits)
    assert sum(1 for s in splits.values() if s == "test") >= 3
    assert sum(1 for s in splits.values() if s == "train") >= sum(1 for s in splits.values() if s == "test")
