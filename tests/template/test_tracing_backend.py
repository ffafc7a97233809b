"""The tracing backend the template gives the functions: X-Ray by default, OpenTelemetry with ADOT.

One parameter, ``AdotLayerArn``, switches every function to the AWS Distro for OpenTelemetry layer,
its exec wrapper and ``TENANTSCOPE_TRACING=otel``, without editing the template.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tenantscope._tracing import TRACING_CHOICES
from tests.template.conftest import Deployment, parameter_values, resolve, sam_template, transform_template

ADOT_LAYER = "arn:aws:lambda:us-east-1:901920570463:layer:aws-otel-python-arm64-ver-1-32-0:2"


def deployment_with(**overrides: str) -> Deployment:
    parameters = {**parameter_values("session-tags", user_pool=False), **overrides}
    return Deployment("session-tags", False, "kms", resolve(transform_template(parameters), parameters))


def functions(deployment: Deployment) -> dict[str, dict[str, Any]]:
    found = deployment.of_type("AWS::Lambda::Function")
    assert len(found) >= 6, sorted(found)
    return found


def test_by_default_every_function_traces_with_x_ray_as_before(deployment: Deployment) -> None:
    (layer,) = deployment.of_type("AWS::Lambda::LayerVersion")
    for name, props in functions(deployment).items():
        assert props["Layers"] == [{"Ref": layer}], name
        environment = deployment.environment(name)
        # declared (sam local passes only declared variables), with the automatic choice
        assert environment["TENANTSCOPE_TRACING"] == "auto", name
        assert "AWS_LAMBDA_EXEC_WRAPPER" not in environment, name
        assert props["TracingConfig"] == {"Mode": "Active"}, name


def test_the_adot_layer_parameter_switches_every_function_to_opentelemetry() -> None:
    # GIVEN the stack deployed with an ADOT layer's ARN
    deployment = deployment_with(AdotLayerArn=ADOT_LAYER)
    (layer,) = deployment.of_type("AWS::Lambda::LayerVersion")
    for name, props in functions(deployment).items():
        # THEN each function has the ADOT layer after tenantscope's, and its exec wrapper
        assert deployment.render(props["Layers"]) == [deployment.ref(layer), ADOT_LAYER], name
        environment = deployment.environment(name)
        assert environment["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/otel-instrument", name
        assert environment["TENANTSCOPE_TRACING"] == "otel", name
        # AND active tracing stays on: the ADOT layer sends its spans to X-Ray through it
        assert props["TracingConfig"] == {"Mode": "Active"}, name


def test_the_template_gives_only_values_tenantscope_accepts() -> None:
    values = sam_template()["Globals"]["Function"]["Environment"]["Variables"]["TENANTSCOPE_TRACING"]
    (_, when_adot, otherwise) = values["Fn::If"]
    assert {when_adot, otherwise} <= set(TRACING_CHOICES)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        (ADOT_LAYER, True),
        ("arn:aws:lambda:eu-west-1:615299751070:layer:AWSOpenTelemetryDistroPython:16", True),
        ("arn:aws:lambda:us-east-1:901920570463:layer:aws-otel-python-arm64-ver-1-32-0", False),  # no version
        ("arn:aws:lambda:us-east-1:123456789012:function:orders-api", False),
        ("otel", False),
    ],
)
def test_the_parameter_takes_a_layer_version_arn_or_nothing(value: str, accepted: bool) -> None:
    pattern = sam_template()["Parameters"]["AdotLayerArn"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is accepted
