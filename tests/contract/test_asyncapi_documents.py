"""The committed AsyncAPI documents are what the services' FastStream apps generate."""

import json
from pathlib import Path

from services.runtime.messaging import asyncapi_documents

ASYNCAPI_DIR = Path(__file__).resolve().parents[2] / "contracts" / "asyncapi"


def test_committed_asyncapi_documents_match_the_services():
    """Changing a subscription or publication without `homecare contracts export` fails here."""
    generated = asyncapi_documents()
    committed = {p.stem: json.loads(p.read_text(encoding="utf-8"))
                 for p in ASYNCAPI_DIR.glob("*.json")}
    assert set(committed) == set(generated) == {"dispatch", "ledger", "timebank"}
    for service, document in generated.items():
        assert json.loads(json.dumps(document)) == committed[service], (
            f"contracts/asyncapi/{service}.json is stale: run `homecare contracts export`")


def test_each_service_documents_what_it_consumes_and_publishes():
    """The ledger consumes homecare.visits and publishes on homecare.funding; dispatch also
    hears the funding answers; the time bank places redemption orders on homecare.orders."""
    channels = {s: {c["address"] for c in d["channels"].values()}
                for s, d in asyncapi_documents().items()}
    assert channels["ledger"] == {"homecare.visits", "homecare.funding"}
    assert channels["timebank"] == {"homecare.visits", "homecare.funding", "homecare.orders"}
    assert channels["dispatch"] == {"homecare.orders", "homecare.visits", "homecare.funding"}
