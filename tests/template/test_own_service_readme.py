"""README's "Use it in your own service" shows the example's files as they are."""

from __future__ import annotations

import re
import shlex

from devtools.cfn import load_template
from tests import own_service

README = own_service.ROOT / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Use it in your own service\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_shows_the_examples_code_and_template_verbatim() -> None:
    (code,) = re.findall(r"```python\n(.*?)```", section(), re.DOTALL)
    (template,) = re.findall(r"```yaml\n(.*?)```", section(), re.DOTALL)
    assert code == (own_service.EXAMPLE / "src" / "app.py").read_text(encoding="utf-8")
    assert template == (own_service.EXAMPLE / "template.yaml").read_text(encoding="utf-8")


def test_the_readme_installs_the_folder_with_the_command_the_clean_venv_test_runs() -> None:
    assert "pip install ./layers/tenantscope " in section()
    install_test = (own_service.ROOT / "tests" / "e2e" / "test_package_install.py").read_text(
        encoding="utf-8"
    )
    assert '"./layers/tenantscope", "pytest", "moto[dynamodb,sqs,sts,iam]"' in install_test
    assert 'pip install pytest "moto[dynamodb,sqs,sts,iam]"' in section()


def test_the_example_names_the_layer_folder_where_the_service_keeps_it() -> None:
    template = (own_service.EXAMPLE / "template.yaml").read_text(encoding="utf-8")
    assert f"ContentUri: {own_service.LIBRARY_IN_SERVICE}/" in template


def test_the_readme_deploys_the_example_with_the_capability_its_named_role_needs() -> None:
    # The tenant role has a name (its trust policy and the functions' policies refer to it), so
    # CloudFormation asks for CAPABILITY_NAMED_IAM; `sam deploy --guided` grants CAPABILITY_IAM
    # alone unless told (samcli's GuidedContext: default_capabilities).
    template = load_template(own_service.EXAMPLE / "template.yaml")
    assert "RoleName" in template["Resources"]["TenantRole"]["Properties"]
    (command,) = re.findall(r"^sam deploy .*?(?<!\\)$", section().replace("\\\n", " "), re.MULTILINE)
    argv = shlex.split(command)
    capabilities = argv[argv.index("--capabilities") + 1 : argv.index("--parameter-overrides")]
    assert capabilities == ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
