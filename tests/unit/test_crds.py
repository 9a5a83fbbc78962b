"""The generated CRDs: in sync with crds/, structural, documented, and carrying kubectl's conveniences."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from serveplane.operator.api import crdgen
from serveplane.operator.api.kinds import KINDS
from serveplane.operator.cli import CRDS_DIR, crd_files

REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"
ALL = crdgen.all_crds()
BY_KIND = {crd["spec"]["names"]["kind"]: crd for crd in ALL}
FORBIDDEN = ("$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "title", "const", "discriminator")


def root_schema(kind: str) -> dict[str, Any]:
    (version,) = BY_KIND[kind]["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below (and including) `node`, with a readable path."""
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def all_nodes() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in BY_KIND:
        yield from nodes(root_schema(kind), kind)


# --- drift ---------------------------------------------------------------------------------------------


def test_cli_writes_into_the_repository_crds_folder():
    assert CRDS_DIR == REPO_CRDS


def test_crds_folder_matches_the_models_byte_for_byte():
    generated = crd_files()
    on_disk = {p.name: p.read_text() for p in REPO_CRDS.glob("*.yaml")}
    hint = "crds/ is out of date with the pydantic models: run `serveplane crds` and commit the result"
    assert sorted(on_disk) == sorted(generated), hint
    for name, text in generated.items():
        assert on_disk[name] == text, f"{name}: {hint}"


def test_crd_files_are_one_yaml_document_per_kind_named_group_plural():
    files = crd_files()
    assert sorted(files) == sorted(f"serveplane.dev_{k.plural}.yaml" for k in KINDS)
    for name, text in files.items():
        assert text.startswith("# Generated from the pydantic models by `serveplane crds`; do not edit.\n")
        (doc,) = list(yaml.safe_load_all(text))
        assert doc["kind"] == "CustomResourceDefinition"
        assert name == f"{doc['spec']['group']}_{doc['spec']['names']['plural']}.yaml"
        assert "&id" not in text and "*id" not in text, "YAML anchors in a CRD file"


def test_crd_files_are_deterministic():
    assert crd_files() == crd_files()


# --- structural schema ----------------------------------------------------------------------------------


def test_every_property_at_every_depth_has_a_description():
    missing = []
    for kind in BY_KIND:
        root = root_schema(kind)
        assert root.get("description"), kind
        for path, node in nodes(root, kind):
            for name, sub in (node.get("properties") or {}).items():
                if path == kind and name == "metadata":
                    continue  # ObjectMeta: the API server's own schema describes it
                if not str(sub.get("description") or "").strip():
                    missing.append(f"{path}.{name}")
    assert not missing, "schema properties without a description: " + ", ".join(missing)


def test_descriptions_are_on_nested_objects_too():
    spec = root_schema("ServeDeployment")["properties"]["spec"]
    assert spec["properties"]["autoscalingConfig"]["properties"]["targetOngoingRequests"]["description"]
    assert spec["properties"]["rayActorOptions"]["properties"]["numCpus"]["description"]
    conditions = root_schema("ServeCluster")["properties"]["status"]["properties"]["conditions"]
    assert all(p.get("description") for p in conditions["items"]["properties"].values())


def test_no_constructs_a_structural_schema_forbids():
    found = [f"{path}: {key}" for path, node in all_nodes() for key in FORBIDDEN if key in node]
    assert not found, found


def test_no_node_has_properties_together_with_additional_properties():
    found = [path for path, node in all_nodes() if "properties" in node and "additionalProperties" in node]
    assert not found, found
    preserved_with_props = [
        path for path, node in all_nodes()
        if "properties" in node and node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert not preserved_with_props, preserved_with_props


def test_every_node_has_a_type_or_an_int_or_string_or_preserve_unknown_hint():
    untyped = [
        path for path, node in all_nodes()
        if not (
            node.get("type")
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        )
    ]
    assert not untyped, untyped
    assert root_schema("ServeCluster")["properties"]["metadata"] == {"type": "object"}


def test_int_or_string_nodes_carry_no_type():
    hits = [(path, node) for path, node in all_nodes() if node.get("x-kubernetes-int-or-string")]
    assert hits, "resources quantities are int-or-string"
    assert all("type" not in node for _, node in hits), hits


def test_required_names_exist_in_properties():
    for path, node in all_nodes():
        if "required" in node and "properties" not in node:
            assert node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: required on a closed, empty object"
            continue
        for name in node.get("required") or []:
            assert name in (node.get("properties") or {}), f"{path}: required {name!r} is not a property"


def test_nothing_is_nullable_and_no_default_is_null():
    for path, node in all_nodes():
        assert "nullable" not in node, path
        assert not ("default" in node and node["default"] is None), path


def test_exclusive_bounds_are_openapi_v3_flags():
    for path, node in all_nodes():
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if flag in node:
                assert node[flag] is True and bound in node, path
    spec = root_schema("ServeDeployment")["properties"]["spec"]["properties"]
    target = spec["autoscalingConfig"]["properties"]["targetOngoingRequests"]
    assert (target["minimum"], target["exclusiveMinimum"]) == (0, True)


def test_map_lists_require_their_keys():
    maps = [(path, node) for path, node in all_nodes() if node.get("x-kubernetes-list-type") == "map"]
    assert {p.split(".")[-1] for p, _ in maps} >= {"conditions", "deployments", "workerGroups"}
    for path, node in maps:
        for key in node["x-kubernetes-list-map-keys"]:
            assert key in (node["items"].get("required") or []), f"{path}: map key {key!r} must be required"


def test_cel_rules_name_only_existing_camelcase_fields():
    for path, node in all_nodes():
        for rule in node.get("x-kubernetes-validations") or []:
            assert rule["message"], path
            for field in re.findall(r"self\.([A-Za-z_]\w*)\b(?!\()", rule["rule"]):
                assert field in (node.get("properties") or {}), f"{path}: rule {rule['rule']!r} names {field!r}"


def test_status_is_a_subresource_of_every_kind():
    for crd in ALL:
        (version,) = crd["spec"]["versions"]
        assert version["subresources"]["status"] == {}
        assert (version["served"], version["storage"], version["name"]) == (True, True, "v1alpha1")
        assert root_schema(crd["spec"]["names"]["kind"])["required"] == ["spec"]


# --- kubectl conveniences -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [("ServeCluster", "serveclusters", "scl"), ("ServeApplication", "serveapplications", "sapp"),
     ("ServeDeployment", "servedeployments", "sdep")],
)
def test_names_short_names_and_category(kind, plural, short):
    crd = BY_KIND[kind]
    assert crd["metadata"]["name"] == f"{plural}.serveplane.dev"
    assert crd["spec"]["group"] == "serveplane.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert names["plural"] == plural
    assert names["singular"] == kind.lower()
    assert names["listKind"] == f"{kind}List"
    assert names["shortNames"] == [short]
    assert names["categories"] == ["serveplane"]


def test_scale_subresource_of_servedeployment_points_at_num_replicas():
    (version,) = BY_KIND["ServeDeployment"]["spec"]["versions"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.numReplicas",
        "statusReplicasPath": ".status.replicas",
    }
    schema = root_schema("ServeDeployment")["properties"]
    assert schema["spec"]["properties"]["numReplicas"]["type"] == "integer"
    assert schema["status"]["properties"]["replicas"]["type"] == "integer"
    for kind in ("ServeCluster", "ServeApplication"):
        (other,) = BY_KIND[kind]["spec"]["versions"]
        assert "scale" not in other["subresources"]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("ServeCluster", {"Status", "Ready", "Nodes", "Desired", "Proxies", "Generation", "Upgrade", "Head", "Age"}),
        ("ServeApplication", {"Status", "Ready", "Cluster", "Route", "Serve", "URL", "Age"}),
        ("ServeDeployment", {"Status", "Ready", "Application", "Replicas", "Desired", "Serve", "Age"}),
    ],
)
def test_printer_columns(kind, expected):
    (version,) = BY_KIND[kind]["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert {c["name"] for c in columns} == expected
    props = root_schema(kind)["properties"]
    for column in columns:
        assert column["type"] in ("string", "integer", "date", "number", "boolean")
        path = column["jsonPath"]
        if path.startswith(".spec.") or path.startswith(".status."):
            # Every step up to a list filter is a property (.status.upgrade.step: upgrade, then its step).
            node: dict[str, Any] = {"properties": props}
            for field in path.split("[")[0][1:].split("."):
                assert field in (node.get("properties") or {}), f"{kind} column {column['name']} reads unknown {path}"
                node = node["properties"][field]
    ready = next(c for c in columns if c["name"] == "Ready")
    assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


# --- rules the API server enforces, which pydantic does not -------------------------------------------------


def _rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations") or []]


def test_num_replicas_and_autoscaling_config_are_exclusive_in_both_places_they_appear():
    rule = "!(has(self.numReplicas) && has(self.autoscalingConfig))"
    sdep = root_schema("ServeDeployment")["properties"]["spec"]
    assert rule in _rules(sdep)
    inline = root_schema("ServeApplication")["properties"]["spec"]["properties"]["deployments"]["items"]
    assert rule in _rules(inline)
    message = next(r["message"] for r in sdep["x-kubernetes-validations"] if r["rule"] == rule)
    assert "numReplicas" in message and "autoscalingConfig" in message


def test_other_cel_rules_are_present():
    cluster = root_schema("ServeCluster")["properties"]["spec"]["properties"]
    assert "self == oldSelf" in _rules(cluster["serve"]["properties"]["httpPort"])
    assert "self == oldSelf" in _rules(cluster["serve"]["properties"]["grpcPort"])
    assert any("has(self.host)" in r for r in _rules(cluster["ingress"]))
    autoscaling = root_schema("ServeDeployment")["properties"]["spec"]["properties"]["autoscalingConfig"]
    assert any("self.minReplicas <= self.maxReplicas" in r for r in _rules(autoscaling))


def test_worker_groups_have_replica_bounds_the_api_server_keeps_in_order():
    group = root_schema("ServeCluster")["properties"]["spec"]["properties"]["workerGroups"]["items"]
    assert {"minReplicas", "maxReplicas"} <= set(group["properties"])
    assert group["properties"]["minReplicas"]["minimum"] == 0
    assert any("self.minReplicas" in r and "self.maxReplicas" in r for r in _rules(group))


@pytest.mark.parametrize("node", ["head", "workerGroups"])
def test_pod_template_of_head_and_worker_groups_documents_its_merge_rules(node):
    spec = root_schema("ServeCluster")["properties"]["spec"]["properties"][node]
    template = (spec.get("items") or spec)["properties"]["podTemplate"]
    assert set(template["properties"]) == {"metadata", "spec"}
    labels = template["properties"]["metadata"]["properties"]["labels"]
    assert labels["additionalProperties"] == {"type": "string"}
    pod_spec = template["properties"]["spec"]
    assert pod_spec["x-kubernetes-preserve-unknown-fields"] is True
    for rule in ("tolerations` are appended", "merge by name", "named `ray` merges into the Ray container",
                 "`volumeMounts` by mountPath", "/dev/shm", "securityContext"):
        assert rule in pod_spec["description"].replace("\n", " ")


def test_import_path_cel_rule_uses_the_same_regex_as_the_pattern():
    node = root_schema("ServeApplication")["properties"]["spec"]["properties"]["importPath"]
    (rule,) = _rules(node)
    quoted = re.fullmatch(r"self\.matches\('(.*)'\)", rule).group(1)
    # CEL single-quoted strings unescape `\\` to `\`.
    assert quoted.replace("\\\\", "\\") == node["pattern"]


def test_bounds_and_patterns_reach_the_schema():
    spec = root_schema("ServeDeployment")["properties"]["spec"]["properties"]
    assert spec["numReplicas"]["minimum"] == 1
    assert spec["numReplicas"]["format"] == "int64"
    app = root_schema("ServeApplication")["properties"]["spec"]["properties"]
    assert app["routePrefix"]["pattern"].startswith("^/")
    assert app["cluster"]["default"] == "default"
    serve = root_schema("ServeCluster")["properties"]["spec"]["properties"]["serve"]["properties"]
    assert serve["proxyLocation"]["enum"] == ["EveryNode", "HeadOnly"]
    assert serve["proxyLocation"]["type"] == "string"
    assert serve["httpPort"]["default"] == 8000


def test_servecluster_columns_show_the_active_generation_and_the_upgrade_step():
    (version,) = BY_KIND["ServeCluster"]["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Generation"]["jsonPath"] == ".status.activeGeneration"
    assert columns["Upgrade"]["jsonPath"] == ".status.upgrade.step"
    assert "priority" not in columns["Generation"] and "priority" not in columns["Upgrade"], "shown by default"


def test_the_upgrade_strategy_schema_carries_its_choices_defaults_and_bounds():
    strategy = root_schema("ServeCluster")["properties"]["spec"]["properties"]["upgradeStrategy"]["properties"]
    assert strategy["type"]["enum"] == ["Incremental", "BlueGreen", "Recreate"]
    assert strategy["type"]["default"] == "Incremental"
    assert (strategy["maxSurgePods"]["default"], strategy["maxSurgePods"]["minimum"]) == (1, 1)
    assert (strategy["timeoutSeconds"]["default"], strategy["timeoutSeconds"]["minimum"]) == (600, 1)
    delay = strategy["oldGenerationDelaySeconds"]
    assert (delay["default"], delay["minimum"]) == (30, 0)


# --- what the API server checks on admission, so an admitted spec is one the operator can act on (issue 20) -----


def test_a_servecluster_name_is_checked_at_the_root_on_create_only():
    rules = root_schema("ServeCluster")["x-kubernetes-validations"]
    assert [r["optionalOldSelf"] for r in rules] == [True, True]
    assert all(r["rule"].startswith("oldSelf.hasValue() || (") and "self.metadata.name" in r["rule"] for r in rules)
    for kind in ("ServeApplication", "ServeDeployment"):
        assert "x-kubernetes-validations" not in root_schema(kind)


def test_resource_quantities_are_checked_and_bounded_for_the_cost_budget():
    spec = root_schema("ServeCluster")["properties"]["spec"]["properties"]
    assert spec["workerGroups"]["maxItems"] == 64
    for node in (spec["head"], spec["workerGroups"]["items"]):
        for section in ("requests", "limits"):
            values = node["properties"]["resources"]["properties"][section]
            assert values["maxProperties"] == 32
            value = values["additionalProperties"]
            assert value["x-kubernetes-int-or-string"] is True and value["maxLength"] == 64
            (rule,) = _rules(value)
            assert "isQuantity(self)" in rule and "quantity('9223372036854775807')" in rule


def test_http_and_grpc_ports_must_differ_with_their_defaults_in_mind():
    serve = root_schema("ServeCluster")["properties"]["spec"]["properties"]["serve"]
    (rule,) = _rules(serve)
    assert rule == "(has(self.httpPort) ? self.httpPort : 8000) != (has(self.grpcPort) ? self.grpcPort : 9000)"
    assert (serve["properties"]["httpPort"]["default"], serve["properties"]["grpcPort"]["default"]) == (8000, 9000)


def test_env_entries_are_typed():
    spec = root_schema("ServeCluster")["properties"]["spec"]["properties"]
    for node in (spec["head"], spec["workerGroups"]["items"]):
        entry = node["properties"]["env"]["items"]
        assert set(entry["properties"]) == {"name", "value", "valueFrom"}
        assert entry["required"] == ["name"] and "x-kubernetes-preserve-unknown-fields" not in entry
        assert (entry["properties"]["name"]["type"], entry["properties"]["name"]["minLength"]) == ("string", 1)
        assert entry["properties"]["value"]["type"] == "string"
        assert entry["properties"]["valueFrom"]["x-kubernetes-preserve-unknown-fields"] is True
