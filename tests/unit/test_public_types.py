"""The public surface, typed from a user's side: a user module that uses every public name passes
mypy --strict, decorated handlers keep their types, and a misspelt setting is a type error (and an
error at decoration, not on the first invocation)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from mypy import api as mypy_api

import tenantscope
from tenantscope import api_handler, sfn_task, sqs_handler

LAYER = Path(tenantscope.__file__).resolve().parents[1]

USER_MODULE = """
from typing import Any

import tenantscope
from tenantscope import (
    ConfigurationError, CredentialVendor, CredentialsUnavailable, CrossTenantAccess, DynamoDbReplayGuard,
    FakeSts, Forbidden, InMemoryReplayGuard, InvalidEnvelope, InvalidTenantId, JwksCache, JwksSource,
    KeyRing, KeysUnavailable, KmsKeyRing, LoggableError, NoTenantContext, NoopTracer, OTelTracer, Reason,
    ReplayGuard,
    ScopedCredentials, SecretsManagerKeyRing, Settings, Span, SqsRecord, SqsRecordHandler,
    StaticJwksSource, StaticKeyRing, StsBackend, StsRefused, StsThrottled, StsUnreachable, TableSpec,
    TemporarilyUnavailable, TenantAuthError, TenantBucket, TenantContext, TenantError, TenantJsonFormatter,
    TenantLogFilter, Tracer, Unauthorized, XRayTracer, add_tenant_fields, api_handler, configure_logging,
    current_tenant, in_tenant_scope, seal_input, send_message, set_tracer, sfn_task, sign_message,
    sqs_handler, sqs_record_handler, start_execution, tenant_bucket, tenant_fields_processor, tenant_key,
    tenant_log_fields, tenant_s3, tenant_scope, tenant_session, tenant_table, validate_tenant_id,
)
from tenantscope.testing import LambdaContext, RecordingTracer, reset_process_state

settings: Settings = Settings.load(tables=(TableSpec("app", "pk"),), metrics="on")
ring: KeyRing = StaticKeyRing({"active": "k1", "keys": {"k1": "A" * 44}})
guard: ReplayGuard = InMemoryReplayGuard()
source: JwksSource = StaticJwksSource({"keys": []})
sts: StsBackend = FakeSts()
vendor = CredentialVendor(sts)


@api_handler
def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
    table = tenant_table("app")
    item = table.get_item(Key={"pk": tenant_key("ITEM", 1)}).get("Item")
    return {"statusCode": 200 if item else 404, "body": current_tenant().tenant_id}


@api_handler(settings=settings, jwks=JwksCache(source), vendor=vendor)
def api_with_settings(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


@sqs_handler(ring=ring, vendor=vendor, replay_guard=guard, settings=settings)
def worker(record: SqsRecord, context: Any) -> None:
    send_message("https://sqs.eu-west-1.amazonaws.com/123456789012/q", record.body, settings=settings)


@sqs_record_handler
def step(record: SqsRecord, context: Any) -> Any:
    return record.json


@sfn_task(name="reserve", ring=ring)
def task(payload: dict[str, Any], context: Any) -> dict[str, int]:
    return {"reserved": 1}


reveal_type(api)
reveal_type(worker)
reveal_type(step)
reveal_type(task)
reveal_type(tenant_table("app"))
reveal_type(tenant_s3())
reveal_type(Reason.UNKNOWN_KID.description)


def errors() -> list[type[TenantError]]:
    return [
        ConfigurationError, CredentialsUnavailable, CrossTenantAccess, Forbidden, InvalidEnvelope,
        InvalidTenantId, KeysUnavailable, NoTenantContext, StsRefused, StsThrottled, StsUnreachable,
        TemporarilyUnavailable, TenantAuthError, Unauthorized,
    ]


class OrderNotFound(LoggableError, LookupError):
    pass


def everything_else() -> None:
    with tenant_scope("acme") as context:
        assert isinstance(context, TenantContext)
        run = in_tenant_scope(lambda: tenant_session().client("dynamodb"))
        run()
        files: TenantBucket = tenant_bucket("files")
        files.put("receipts/1.json", b"{}", ContentType="application/json")
        url: str = files.presign_download("receipts/1.json", expires_in=60)
        form: dict[str, Any] = files.presign_upload("a.png", content_type="image/png", max_bytes=1024)
    tracer: Tracer = RecordingTracer()
    set_tracer(tracer)
    set_tracer(NoopTracer())
    set_tracer(XRayTracer())
    set_tracer(OTelTracer())
    configure_logging()
    TenantLogFilter()
    TenantJsonFormatter()
    import logging
    stdlib_logger: logging.Logger = add_tenant_fields(logging.getLogger())
    fields: dict[str, str] = tenant_log_fields()
    event: Any = tenant_fields_processor(None, "info", {"event": "x"})
    version: str = tenantscope.__version__
    validate_tenant_id("acme")
    sign_message("{}", destination="arn:aws:sqs:eu-west-1:123456789012:q", tenant_id="acme", ring=ring)
    seal_input({}, state_machine_arn="arn", execution_name="e", tenant_id="acme", ring=ring)
    start_execution("arn", {}, tenant_id="acme", settings=settings)
    DynamoDbReplayGuard("replay")
    KmsKeyRing(("alias/k",))
    SecretsManagerKeyRing("secret")
    ScopedCredentials("acme", "a", "s", "t", 1.0)
    assert isinstance(step, SqsRecordHandler)
    spans: list[Span] = [RecordingTracer().span("x").__enter__()]
    api(LambdaContext().__dict__, LambdaContext(tenant_id="acme"))
    reset_process_state()
    assert tenantscope.__all__
"""


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    folder = tmp_path_factory.mktemp("user")
    (folder / "user_app.py").write_text(textwrap.dedent(USER_MODULE))
    (folder / "misspelt.py").write_text(
        "from tenantscope import api_handler\napi_handler(jwt_audiense='x')\n"
    )
    stdout, _, status = mypy_api.run(
        [
            "--strict",
            "--follow-imports=silent",  # the layer itself is checked by `make typecheck`
            "--cache-dir",
            str(folder / ".mypy_cache"),
            str(folder / "user_app.py"),
            str(folder / "misspelt.py"),
        ]
    )
    return stdout, status


def _lines(report: tuple[str, int], module: str) -> list[str]:
    return [
        line for line in report[0].splitlines() if line.startswith(f"{module}.py") or f"/{module}.py:" in line
    ]


def test_every_public_name_is_exported_and_typed_for_users(mypy_report: tuple[str, int]) -> None:
    used = set(USER_MODULE.replace(",", " ").split())
    assert set(tenantscope.__all__) <= used, sorted(set(tenantscope.__all__) - used)
    errors = [line for line in _lines(mypy_report, "user_app") if ": error:" in line]
    assert errors == []


def test_decorated_handlers_keep_their_types(mypy_report: tuple[str, int]) -> None:
    revealed = [
        line.split("Revealed type is ")[1] for line in _lines(mypy_report, "user_app") if "Revealed" in line
    ]
    assert revealed == [
        '"def (event: dict[str, Any], context: Any) -> dict[str, Any]"',  # the handler itself
        '"def (dict[str, Any], Any) -> dict[str, Any]"',  # the SQS batch handler
        '"tenantscope.sqs.SqsRecordHandler"',
        '"def (dict[str, Any], Any) -> dict[str, Any]"',  # the Step Functions task
        '"mypy_boto3_dynamodb.service_resource.Table"',  # under TYPE_CHECKING only
        '"mypy_boto3_s3.client.S3Client"',
        '"str"',
    ]


def test_a_misspelt_setting_is_a_type_error(mypy_report: tuple[str, int]) -> None:
    assert any(
        'Unexpected keyword argument "jwt_audiense"' in line for line in _lines(mypy_report, "misspelt")
    )


@pytest.mark.parametrize("decorator", [api_handler, sqs_handler, sfn_task])
def test_a_misspelt_setting_fails_at_decoration(decorator: Any) -> None:
    with pytest.raises(TypeError, match="jwt_audiense"):
        decorator(jwt_audiense="x")


def test_public_names_report_the_package_as_their_module() -> None:
    for name in tenantscope.__all__:
        value = getattr(tenantscope, name)
        assert getattr(value, "__module__", "tenantscope") == "tenantscope", name


def test_the_value_types_are_frozen_dataclasses_with_their_usual_behaviour() -> None:
    import dataclasses

    from tenantscope import SqsRecord, TenantContext
    from tenantscope._envelope import Envelope

    context = TenantContext("acme", source="sqs", claims={"message_id": "m-1"})
    record = SqsRecord("m-1", "{}", {}, {}, "arn:aws:sqs:us-east-1:123456789012:q")
    envelope = Envelope("k1", "acme", 1, 2, "0" * 32, "f" * 64, "sqs:arn")
    for value in (context, record, envelope):
        fields = [field.name for field in dataclasses.fields(value)]
        # Equal to a copy rebuilt from its own fields, and immutable.
        assert dataclasses.replace(value) == value
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, fields[0], "changed")
    assert repr(context) == (
        "TenantContext(tenant_id='acme', source='sqs', subject=None, "
        "claims=mappingproxy({'message_id': 'm-1'}))"
    )
    assert "message_attributes" not in repr(record)  # kept out of logs
    # Hashable though they hold dicts, and alike when equal: usable as keys and in sets.
    same_context = TenantContext("acme", source="sqs", claims={"message_id": "m-1"})
    same_record = SqsRecord("m-1", "{}", {}, {}, "arn:aws:sqs:us-east-1:123456789012:q")
    assert {context: 1}[same_context] == 1
    assert {record: 1}[same_record] == 1
    assert len({context, same_context, TenantContext("acme", source="sqs")}) == 2
    assert hash(envelope) == hash(dataclasses.replace(envelope))
    assert envelope.version == "1"
    assert TenantContext("acme").claims == {}
    with pytest.raises(TypeError):
        TenantContext("acme", claims=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        context.claims["message_id"] = "m-2"  # type: ignore[index]
