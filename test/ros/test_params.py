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

    for param, reason in [(Parameter("level", value=0), "must be in [1, 22]"),
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
