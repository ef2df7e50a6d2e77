"""params.py: declared as data; the same checks at start-up and at run time; read-only
parameters refuse changes; type mistakes become one ParameterError line."""

import pytest
import rclpy
from rclpy.parameter import Parameter

from mtl_split_ros.params import Param, ParameterError, declare_all, in_range, positive

pytestmark = pytest.mark.ros
PARAMS = [
    Param("period", 1.0, "Seconds.", check=positive, dynamic=True),
    Param("level", 3, "Level.", check=in_range(1, 22), dynamic=True),
    Param("mode", "a", "Mode.", ("a", "b"), dynamic=True),
    Param("split", "", "Name or index.", dynamic=True, types=(str, int)),
    Param("model", "", "Fixed at start."),
    Param("gain", 0.5, "Gain.", check=in_range(0.0, 2.0), dynamic=True),
]


@pytest.fixture
def make_node():
    rclpy.init()
    nodes = []

    def make(overrides=(), **kw):
        node = rclpy.create_node(f"params_test_{len(nodes)}", parameter_overrides=[
            Parameter(k, value=v) for k, v in overrides])
        nodes.append(node)
        return node
    yield make
    for n in nodes:
        n.destroy_node()
    rclpy.shutdown()


def test_start_up_values_are_validated_and_coerced(make_node):
    cfg = declare_all(make_node([("period", 2), ("split", 2)]), PARAMS)
    assert cfg["period"] == 2.0 and isinstance(cfg["period"], float)
    assert cfg["split"] == 2 and cfg["mode"] == "a"


@pytest.mark.parametrize("overrides, expected", [
    ([("level", "abc")], "parameter 'level': wrong type, expected an integer"),
    ([("level", 99)], "parameter 'level' = 99: must be in [1, 22]"),
    ([("mode", "c")], "parameter 'mode' = 'c' is not accepted; expected one of: a, b"),
    ([("split", 1.5)], "parameter 'split' = 1.5: expected a string or an integer"),
    ([("period", "x")], "parameter 'period' = 'x': expected a number or an integer"),
    ([("period", True)], "parameter 'period' = True: expected a number"),
])
def test_bad_start_up_values(make_node, overrides, expected):
    with pytest.raises(ParameterError) as err:
        declare_all(make_node(overrides), PARAMS)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_run_time_changes_go_through_the_same_checks_and_the_apply_hook(make_node):
    node = make_node()
    applied = []

    def apply(changes):
        if changes.get("split") == "bad":
            raise ParameterError("parameter 'split': no such split")
        applied.append(dict(changes))

    cfg = declare_all(node, PARAMS, apply=apply)
    ok = node.set_parameters_atomically([Parameter("level", value=5),
                                         Parameter("period", value=3)])
    assert ok.successful and cfg["level"] == 5 and cfg["period"] == 3.0
    assert applied == [{"level": 5, "period": 3.0}]

    # Out of the declared ROS range: rclpy refuses it before the node's own check.
    for param, reason in [(Parameter("level", value=0), "out of range. Min: 1, Max: 22"),
                          (Parameter("split", value="bad"), "no such split"),
                          (Parameter("mode", value="z"), "not accepted")]:
        result = node.set_parameters([param])[0]
        assert not result.successful and reason in result.reason
    assert cfg["level"] == 5 and node.get_parameter("level").value == 5
    assert cfg["split"] == "" and node.get_parameter("split").value == ""

    result = node.set_parameters([Parameter("model", value="other")])[0]
    assert not result.successful and "read-only" in result.reason
    assert cfg["model"] == "" and node.describe_parameter("model").read_only
    assert "Changeable at run time" in node.describe_parameter("level").description


def test_ranges_are_declared_as_ros_ranges(make_node):
    """`ros2 param describe` shows the bounds of an in_range check (IntegerRange for an
    integer, FloatingPointRange for a number); other checks declare none."""
    node = make_node()
    declare_all(node, PARAMS)
    (level,) = node.describe_parameter("level").integer_range
    assert (level.from_value, level.to_value, level.step) == (1, 22, 1)
    (gain,) = node.describe_parameter("gain").floating_point_range
    assert (gain.from_value, gain.to_value, gain.step) == (0.0, 2.0, 0.0)
    period = node.describe_parameter("period")
    assert not period.floating_point_range and not period.integer_range
    # An integer for a number parameter stays accepted (as `ros2 param set gain 1` sends it);
    # rclpy checks ranges of doubles only, the node's own check does the rest.
    assert node.set_parameters([Parameter("gain", value=1)])[0].successful
    for value, reason in [(3, "'gain' = 3.0: must be in [0.0, 2.0]"), (2.5, "out of range")]:
        result = node.set_parameters([Parameter("gain", value=value)])[0]
        assert not result.successful and reason in result.reason, result.reason


@pytest.mark.parametrize("overrides, expected", [
    ([("gain", 3.5)], "parameter 'gain' = 3.5: must be in [0.0, 2.0]"),
    ([("gain", 3)], "parameter 'gain' = 3.0: must be in [0.0, 2.0]"),  # an int: the node's check
])
def test_a_start_up_value_outside_the_declared_range_is_one_line(make_node, overrides, expected):
    with pytest.raises(ParameterError) as err:
        declare_all(make_node(overrides), PARAMS)
    assert str(err.value) == expected


def test_show_effective_reports_the_running_value_without_a_change(make_node):
    node = make_node()
    applied = []
    cfg = declare_all(node, PARAMS, apply=applied.append)
    cfg.show_effective({"split": "s16", "level": 7})  # level was given (3): stays
    assert node.get_parameter("split").value == "s16" and cfg["split"] == "s16"
    assert node.get_parameter("level").value == 3 and cfg["level"] == 3
    assert applied == []  # not a change the node has to apply
    assert node.set_parameters([Parameter("split", value="s8")])[0].successful
    assert applied == [{"split": "s8"}] and cfg["split"] == "s8"
