"""Pool naming and bounds: the input topic template, robot names, topic -> robot."""

import pytest

from mtl_split_core.runtime.pool_announcement import (
    MAX_FINGERPRINTS,
    Announcement,
    AnnouncementRejected,
    announced_fingerprints,
    check_announcement,
    check_input_topic,
    default_input_topic,
    output_prefix,
    robot_name,
    robot_of_topic,
)


def test_a_robot_finds_its_input_and_the_server_finds_the_robot():
    template = default_input_topic("gpu0_1")
    assert template == "/{robot}/mtl_split/to/gpu0_1/features"
    ann = Announcement(server_id="gpu0_1", sequence=1, input_topic=template,
                       fingerprints=("fp",))
    topic = ann.input_for("fleet/r3")
    assert topic == "/fleet/r3/mtl_split/to/gpu0_1/features"
    assert robot_of_topic(topic, template) == "fleet/r3"
    assert output_prefix("fleet/r3") == "/fleet/r3/mtl_split/"
    for other in ("/r1/mtl_split/to/gpu0_2/features", "/mtl_split/to/gpu0_1/features",
                  "/1r/mtl_split/to/gpu0_1/features", "/r1/mtl_split/features"):
        assert robot_of_topic(other, template) is None, other


def test_robot_names_come_from_namespaces():
    assert robot_name("/fleet/r1") == "fleet/r1"
    for bad in ("/", "", "/1r", "/r" + "x" * 200):
        with pytest.raises(ValueError):
            robot_name(bad)


@pytest.mark.parametrize("topic", ["/mtl_split/features", "/{robot}/{robot}/features",
                                   "{robot}/features", "/{robot}/mtl split/features",
                                   "/{robot}/x/features/", "/{robot}" + "/a" * 200 + "/features"])
def test_malformed_input_topics_are_rejected(topic):
    with pytest.raises(AnnouncementRejected) as err:
        check_input_topic(topic)
    assert err.value.reason == "input_topic"


def test_a_valid_announcement_passes_and_a_bad_split_or_sequence_does_not():
    ok = Announcement(server_id="s", sequence=1, input_topic=default_input_topic("s"),
                      fingerprints=("fp",), splits=(0, 3))
    assert check_announcement(ok) is ok
    for field, value, reason in (("splits", (300,), "splits"), ("sequence", -1, "sequence"),
                                 ("fingerprints", (), "fingerprints"),
                                 ("refusal", "x" * 300, "refusal")):
        bad = Announcement(**{**ok.__dict__, field: value})
        with pytest.raises(AnnouncementRejected) as err:
            check_announcement(bad)
        assert err.value.reason == reason


def test_a_server_announces_its_own_fingerprint_first_then_the_edges_it_also_serves():
    assert announced_fingerprints("own", frozenset({"own"})) == ("own",)
    assert announced_fingerprints("own", {"b", "own", "a"}) == ("own", "a", "b")
    many = announced_fingerprints("own", {f"fp{i:02d}" for i in range(20)} | {"own"})
    assert len(many) == MAX_FINGERPRINTS and many[0] == "own"
    check_announcement(Announcement(server_id="s", sequence=1, input_topic=default_input_topic(
        "s"), fingerprints=many))  # within the announcement's bounds
