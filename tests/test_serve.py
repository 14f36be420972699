"""The real server on a loopback port, driven by the official `openai` client and by raw HTTP: completions,
chat, streaming, classify, routing (`model: auto`), admin load/unload while requests run, the micro-batcher
mixing adapters in one forward without cross-talk, and every bad request answered with the right 4xx."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from helpers import cli, copy_run

from lora_adapt import AdapterSet
from lora_adapt.recipe.serving import GenerationSpec, ServeSpec
from lora_adapt.serve import running
from lora_adapt.serve.limits import ConcurrencyLimit

KEY = "test-key"
PROMPTS = ["Summarise ticket 1.", "Summarise ticket 5 about rent.", "The tenant shall pay"]
NAMES = ["chat", "chat2", "base"]
GREEDY = GenerationSpec(max_new_tokens=8)


@pytest.fixture(scope="module")
def reference(domain_runs) -> AdapterSet:
    """A second set, answering in the test thread: what each adapter gives alone."""
    return AdapterSet.load({"chat": domain_runs["chat"], "chat2": domain_runs["chat2"]})


@pytest.fixture(scope="module")
def chat_server(domain_runs):
    aset = AdapterSet.load({"chat": domain_runs["chat"], "chat2": domain_runs["chat2"]})
    settings = ServeSpec(
        port=0,
        api_key=KEY,
        max_wait_ms=50,
        max_batch_size=16,
        max_prompt_tokens=64,
        max_tokens=16,
        max_body_bytes=20_000,
        max_inputs=4,
    )
    with running(aset, settings) as served:
        yield served


@pytest.fixture(scope="module")
def client(chat_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=chat_server.url + "/v1", api_key=KEY, max_retries=0, timeout=600)


def alone(reference: AdapterSet, name: str, raw, **kw) -> dict:
    return reference.run([(name, raw)], GenerationSpec(max_new_tokens=8, **kw))[0]


def test_openai_client_lists_models_and_completes_as_each_adapter_alone(client, reference):
    models = {m.id: m for m in client.models.list()}
    assert (
        set(models) == {"base", "chat", "chat2"} and models["chat"].model_extra["parent"] == models["base"].id
    )
    for name, prompt in zip(NAMES, PROMPTS, strict=True):
        response = client.completions.create(model=name, prompt=prompt, max_tokens=8, temperature=0)
        expected = alone(reference, name, {"text": prompt})
        assert response.model == name and response.choices[0].text == expected["text"]
        assert response.choices[0].finish_reason == expected["finish_reason"]
        assert response.usage.completion_tokens == expected["completion_tokens"]


def test_chat_and_streaming_give_the_same_answer(client, reference):
    messages = [{"role": "user", "content": "Summarise ticket 2 about meter."}]
    expected = alone(reference, "chat", {"messages": messages})
    response = client.chat.completions.create(model="chat", messages=messages, max_tokens=8)
    assert response.choices[0].message.content == expected["text"] and response.model == "chat"
    chunks = list(client.chat.completions.create(model="chat", messages=messages, max_tokens=8, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected["text"]
    assert chunks[-1].choices[0].finish_reason == expected["finish_reason"]
    stop = expected["text"][2:4] or "x"
    cut = alone(reference, "chat2", {"text": PROMPTS[0]}, stop=(stop,))
    streamed = client.completions.create(
        model="chat2", prompt=PROMPTS[0], max_tokens=8, stop=[stop], stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == cut["text"]


def test_concurrent_mixed_adapter_requests_share_a_batch_without_cross_talk(client, chat_server, reference):
    state = chat_server.state
    gate = threading.Event()
    state.batcher.executor.submit(gate.wait)  # hold the model thread so every request queues up
    jobs = [(name, prompt) for prompt in PROMPTS for name in NAMES]
    seen = len(state.batcher.batch_sizes)
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(client.completions.create, model=n, prompt=p, max_tokens=8) for n, p in jobs]
        while state.batcher.waiting < len(jobs) and not any(f.done() for f in futures):
            time.sleep(0.01)  # waiting for a count of queued requests, not for a time
        gate.set()
        answers = [f.result().choices[0].text for f in futures]
    assert answers == [alone(reference, n, {"text": p})["text"] for n, p in jobs]
    # all 12 were waiting together: at most two collections (the one held at the gate, then the rest)
    assert max(state.batcher.batch_sizes[seen:]) >= len(jobs) // 2


def test_adapters_load_and_unload_while_requests_run(client, chat_server, domain_runs, reference, tmp_path):
    chat3 = copy_run(domain_runs["chat"], tmp_path / "chat3" / "chat3", scale=3.0)  # same weights as chat2
    expected = alone(reference, "chat", {"text": PROMPTS[1]})["text"]
    headers = {"Authorization": f"Bearer {KEY}"}
    stop = threading.Event()

    def keep_asking() -> list[str]:
        out = []
        while not stop.is_set() or len(out) < 2:
            out.append(
                client.completions.create(model="chat", prompt=PROMPTS[1], max_tokens=8).choices[0].text
            )
        return out

    with (
        ThreadPoolExecutor(2) as pool,
        httpx.Client(base_url=chat_server.url, headers=headers, timeout=600) as http,
    ):
        askers = [pool.submit(keep_asking) for _ in range(2)]
        loaded = http.post("/v1/adapters", json={"name": "chat3", "source": str(chat3)})
        assert loaded.status_code == 201 and loaded.json()["memory"]["added_bytes"] > 0
        assert http.post("/v1/adapters", json={"name": "chat3", "source": str(chat3)}).status_code == 409
        assert http.delete("/v1/adapters/chat2").status_code == 200
        stop.set()
        answers = [a for f in askers for a in f.result()]
    assert answers and set(answers) == {expected}
    assert (
        client.completions.create(model="chat3", prompt=PROMPTS[0], max_tokens=8).choices[0].text
        == alone(reference, "chat2", {"text": PROMPTS[0]})["text"]
    )
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="chat2", prompt="x", max_tokens=2)
    with httpx.Client(
        base_url=chat_server.url, headers=headers
    ) as http:  # back as it was for the other tests
        assert (
            http.post("/v1/adapters", json={"name": "chat2", "source": str(domain_runs["chat2"])}).status_code
            == 201
        )
        assert http.delete("/v1/adapters/chat3").status_code == 200
        assert http.delete("/v1/adapters/nope").status_code == 404


BAD_REQUESTS = [
    (
        "post",
        "/v1/completions",
        {"content": b'{"model": "chat", "prompt": ', "headers": {"content-type": "application/json"}},
        400,
        "invalid_json",
    ),
    ("post", "/v1/completions", {"json": {"model": "nope", "prompt": "x"}}, 404, "model_not_found"),
    (
        "post",
        "/v1/chat/completions",
        {"json": {"model": "nope", "messages": [{"role": "user", "content": "x"}], "stream": True}},
        404,
        "model_not_found",
    ),
    (
        "post",
        "/v1/completions",
        {"json": {"model": "chat", "prompt": "rent " * 200}},
        400,
        "context_length_exceeded",
    ),
    ("post", "/v1/completions", {"json": {"model": "chat", "prompt": "x", "max_tokens": 10_000}}, 400, None),
    ("post", "/v1/completions", {"json": {"model": "chat", "prompt": "x", "n": 2}}, 400, "invalid_value"),
    ("post", "/v1/completions", {"json": {"model": "chat", "prompt": ["a"] * 5}}, 400, None),
    ("post", "/v1/chat/completions", {"json": {"model": "chat", "messages": []}}, 400, "invalid_value"),
    ("post", "/v1/classify", {"json": {"model": "chat", "input": "x"}}, 400, None),
    ("post", "/v1/completions", {"json": {"model": "auto", "prompt": "x"}}, 400, None),
    (
        "post",
        "/v1/completions",
        {"content": b"x" * 30_000, "headers": {"content-type": "application/json"}},
        413,
        "request_too_large",
    ),
    ("get", "/v1/nothing-here", {}, 404, None),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), BAD_REQUESTS)
def test_bad_requests_get_openai_style_errors_and_the_server_keeps_serving(
    chat_server, client, method, path, kwargs, status, code
):
    with httpx.Client(
        base_url=chat_server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=600
    ) as http:
        response = getattr(http, method)(path, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] and (code is None or error["code"] == code)
    assert httpx.get(chat_server.url + "/health").json()["status"] == "ok"
    assert client.completions.create(model="chat", prompt="x", max_tokens=2).choices[0].finish_reason


def test_unknown_request_fields_are_refused_naming_them_not_dropped(chat_server):
    with httpx.Client(
        base_url=chat_server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=600
    ) as http:
        biased = http.post(
            "/v1/completions",
            json={"model": "chat", "prompt": "x", "max_tokens": 2, "logit_bias": {"5": 100}, "tools": []},
        )
        named = http.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "x", "name": "ann"}]},
        )
        classify = http.post("/v1/classify", json={"model": "chat", "input": "x", "labels": ["a"]})
        load = http.post("/v1/adapters", json={"name": "c", "source": "x", "revision": "main"})
        vllm = http.post(
            "/v1/load_lora_adapter", json={"lora_name": "chat", "lora_path": "x", "load_inplace": True}
        )
        user = http.post(
            "/v1/completions", json={"model": "chat", "prompt": "x", "max_tokens": 2, "user": "u1"}
        )
        vllm_sampling = [  # vLLM's top_k and repetition_penalty are honoured: top_k 1 samples greedily
            http.post(
                "/v1/completions",
                json={
                    "model": "chat",
                    "prompt": "the",
                    "max_tokens": 4,
                    "temperature": t,
                    "seed": s,
                    **extra,
                },
            ).json()["choices"][0]["text"]
            for t, s, extra in (
                (0, None, {}),
                (1.5, 1, {"top_k": 1}),
                (1.5, 2, {"top_k": 1, "repetition_penalty": 1.0}),
            )
        ]
    error = biased.json()["error"]
    assert (
        biased.status_code == 400 and error["code"] == "unknown_parameter" and error["param"] == "logit_bias"
    )
    assert "'logit_bias', 'tools'" in error["message"]
    assert named.status_code == 400 and named.json()["error"]["param"] == "messages.0.name"
    for response, field in ((classify, "labels"), (load, "revision"), (vllm, "load_inplace")):
        assert response.status_code == 400 and response.json()["error"]["param"] == field, response.text
        assert f"'{field}'" in response.json()["error"]["message"]
    assert user.status_code == 200  # OpenAI's end-user id: documented as accepted, it changes no answer
    assert vllm_sampling[1] == vllm_sampling[2] == vllm_sampling[0], vllm_sampling
    assert "chat" in httpx.get(chat_server.url + "/health").json()["adapters"]


def test_a_name_conflict_is_409_by_its_type_not_by_its_message(chat_server, monkeypatch):
    from lora_adapt.domains.adapter_set import AdapterExistsError
    from lora_adapt.errors import UsageError

    headers = {"Authorization": f"Bearer {KEY}"}
    raised: list[Exception] = []

    def add(name, source):
        raise raised[-1]

    monkeypatch.setattr(chat_server.state.aset, "add", add)
    with httpx.Client(base_url=chat_server.url, headers=headers, timeout=600) as http:
        raised.append(AdapterExistsError("the name 'chat' is taken"))
        assert http.post("/v1/adapters", json={"name": "chat", "source": "x"}).status_code == 409
        raised.append(UsageError("x: its tokenizer is already loaded with other special tokens"))
        assert http.post("/v1/adapters", json={"name": "new", "source": "x"}).status_code == 400


def test_missing_or_wrong_api_key_is_401(chat_server):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(chat_server.url + "/v1/models", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=chat_server.url + "/v1", api_key="wrong", max_retries=0).models.list()


# --- classifier heads, routing -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def router_run(domain_runs, tmp_path_factory):
    from lora_adapt import artifacts as A
    from lora_adapt.domains.route_build import build_router

    out = tmp_path_factory.mktemp("router") / "router"
    write_text = A.atomic_write_text

    def recorded(path, text):
        ROUTER_WRITES.append(Path(path))
        write_text(path, text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(A, "atomic_write_text", recorded)
        build_router(
            {"tickets": str(domain_runs["tickets"]), "binary": str(domain_runs["binary"])},
            out,
            epochs=1,
            echo=lambda _: None,
        )
    return out


ROUTER_WRITES: list[Path] = []
"""Every file `route build` wrote (through artifacts' atomic writer), in order."""


def test_route_build_writes_route_json_once_and_last(router_run):
    routes = [p for p in ROUTER_WRITES if p.name == "route.json"]
    assert routes == [router_run / "route.json"]  # once: complete, with the per-domain test accuracy
    assert ROUTER_WRITES[-1] == router_run / "route.json"  # last: a router without it is refused


def test_route_build_keeps_the_better_router_and_reports_accuracy_per_domain(router_run):
    from lora_adapt import artifacts as A

    config = A.read_json(router_run / "route.json")
    held_out = config["held_out"]
    assert config["chosen"] in held_out and set(held_out) == {"lora", "tfidf_logreg", "frozen_probe"}
    # the best balanced accuracy on the held-out slice (then accuracy; then LoRA, TF-IDF, the probe)
    order = ("lora", "tfidf_logreg", "frozen_probe")
    rank = {k: (v["balanced_accuracy"], v["accuracy"], -order.index(k)) for k, v in held_out.items()}
    assert config["chosen"] == max(rank, key=rank.__getitem__)
    metrics = A.read_json(router_run / "metrics.json")
    probe = metrics["baselines"]["base_model"]
    assert held_out["frozen_probe"] == {
        "balanced_accuracy": probe["recall_macro"],
        "accuracy": probe["accuracy"],
    }
    assert held_out["lora"]["balanced_accuracy"] == metrics["task"]["recall_macro"]
    assert (
        config["test_accuracy"]["tickets"]["accuracy"] >= 0.9
        and config["test_accuracy"]["binary"]["accuracy"] >= 0.9
    )
    assert "## Routing" in (router_run / "report.md").read_text()


def test_the_router_keeps_its_training_rows_so_eval_reruns_it_after_the_build(router_run):
    from lora_adapt import artifacts as A
    from lora_adapt.rundir import read_run

    kept = router_run.resolve() / "router_data.jsonl"
    assert read_run(router_run).recipe.data.path == kept and kept.is_file()
    data = A.read_json(router_run / "manifest.json")["data"]
    assert list(data["files"]) == list(data["stats"]["file_formats"]) == [str(kept)]
    records = [f for f in router_run.rglob("*") if f.suffix in (".json", ".yaml", ".md")]
    assert not [f for f in records if "lora-adapt-route-" in f.read_text()]  # the temporary copy's path
    labels = {json.loads(line)["label"] for line in kept.read_text().splitlines()}
    assert labels == {"tickets", "binary"}
    scored = cli("eval", str(router_run), "--split", "test")
    assert scored.exit_code == 0, scored.output
    assert "Traceback" not in scored.output


def test_a_frozen_probe_router_is_kept_as_coefficients_and_routes_as_it_scored(
    domain_runs, tmp_path, monkeypatch
):
    """When the frozen-encoder probe wins the held-out slice (forced here: the tiny base's probe does not
    win on its own), `route build` keeps it as numbers; the kept probe is the one the evaluation scored (the
    same accuracy on the held-out slice), equals scikit-learn's own predict_proba, and serves `auto`."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from lora_adapt import artifacts as A
    from lora_adapt.data import load_split_rows
    from lora_adapt.domains import route_build
    from lora_adapt.domains.router import ProbeClassifier, load_router, probe_features
    from lora_adapt.rundir import read_run

    scores = route_build._held_out_scores
    monkeypatch.setattr(
        route_build,
        "_held_out_scores",
        lambda metrics: {**scores(metrics), "frozen_probe": {"balanced_accuracy": 2.0, "accuracy": 2.0}},
    )
    out = tmp_path / "probe-router"
    sources = {"tickets": str(domain_runs["tickets"]), "binary": str(domain_runs["binary"])}
    config = route_build.build_router(sources, out, epochs=1, echo=lambda _: None)
    assert config["chosen"] == "frozen_probe" and (out / "router_probe.json").is_file()
    assert not (out / "router_tfidf.json").exists()
    assert config["test_accuracy"]["all"]["accuracy"] is not None

    served = AdapterSet.load(sources)
    router = load_router(out, served)
    assert router.probe is not None
    splits, _ = load_split_rows(read_run(out).recipe.data, read_run(out).recipe.task)
    test = splits["test"]
    features = probe_features(router.head_set, [r["text"] for r in test])
    routed = [max(p, key=p.__getitem__) for p in router.probabilities([r["text"] for r in test])]
    accuracy = np.mean([p == r["label"] for p, r in zip(routed, test, strict=True)])
    scored = A.read_json(out / "metrics.json")["baselines"]["base_model"]["accuracy"]
    assert abs(accuracy - scored) <= 1 / len(test) + 1e-9  # the probe the evaluation scored

    probe = router.probe
    sk = LogisticRegression(C=probe.c)
    sk.classes_, sk.coef_, sk.intercept_ = np.array(probe.classes), probe.coef, probe.intercept
    expected = sk.predict_proba((features - probe.mean) / probe.scale)
    got = np.array([[p[k] for k in probe.classes] for p in probe.probabilities_of(features)])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)

    three = ProbeClassifier.fit(  # a softmax over three classes reads the same as scikit-learn's too
        features, [["a", "b", "c"][i % 3] for i in range(len(test))], None, []
    )
    sk3 = LogisticRegression(C=three.c)
    sk3.classes_, sk3.coef_, sk3.intercept_ = np.array(three.classes), three.coef, three.intercept
    np.testing.assert_allclose(
        [[p[k] for k in three.classes] for p in three.probabilities_of(features)],
        sk3.predict_proba((features - three.mean) / three.scale),
        rtol=1e-9,
        atol=1e-12,
    )
    with running(served, ServeSpec(port=0, max_wait_ms=20), router) as server:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            auto = http.post("/v1/classify", json={"model": "auto", "input": [test[0]["text"]]}).json()
    assert auto["data"][0]["routing"]["top"] == routed[0]

    (out / "router_probe.json").write_text('{"classes": ["tickets"], "c": 1.0}')
    damaged = cli(
        "serve",
        "--adapter",
        f"tickets={sources['tickets']}",
        "--adapter",
        f"binary={sources['binary']}",
        "--router",
        str(out),
        "--port",
        "0",
    )
    assert damaged.exit_code == 2 and "router_probe.json is damaged" in damaged.output


def test_classify_mixes_heads_of_different_widths_and_auto_routes_by_text(domain_runs, router_run):
    from lora_adapt.domains.router import load_router

    reference = AdapterSet.load({"tickets": domain_runs["tickets"], "binary": domain_runs["binary"]})
    served = AdapterSet.load({"tickets": domain_runs["tickets"], "binary": domain_runs["binary"]})
    router = load_router(router_run, served)
    texts = {
        "tickets": "the meter reading looks wrong, ticket 9",
        "binary": "Mary Jones flew to Berlin on day 4 for trip 2",
    }
    with (
        running(served, ServeSpec(port=0, max_wait_ms=50), router) as server,
        httpx.Client(base_url=server.url, timeout=600) as http,
    ):
        with ThreadPoolExecutor(4) as pool:
            futures = {
                n: pool.submit(http.post, "/v1/classify", json={"model": n, "input": [t, t], "top_labels": 0})
                for n, t in texts.items()
            }
            answers = {n: f.result().json() for n, f in futures.items()}
        for name, text in texts.items():
            expected = reference.run([(name, text)], top_k=0)[0]
            for row in answers[name]["data"]:
                assert row["adapter"] == name and row["label"] == expected["label"]
                assert all(
                    abs(row["probabilities"][k] - v) < 1e-5 for k, v in expected["probabilities"].items()
                )
        auto = http.post("/v1/classify", json={"model": "auto", "input": list(texts.values())}).json()
        assert [row["adapter"] for row in auto["data"]] == list(texts)
        assert all(row["routing"]["reason"] == "confident" for row in auto["data"])
        wrong = http.post(
            "/v1/chat/completions", json={"model": "tickets", "messages": [{"role": "user", "content": "x"}]}
        )
        assert wrong.status_code == 400 and "/v1/classify" in wrong.json()["error"]["message"]


def test_a_request_past_its_timeout_gets_504(domain_runs):
    aset = AdapterSet.load({"tickets": domain_runs["tickets"]})
    settings = ServeSpec(
        port=0, timeout_s=0.001, max_wait_ms=200
    )  # the batcher waits longer than the timeout
    with running(aset, settings) as server:
        response = httpx.post(
            server.url + "/v1/classify", json={"model": "tickets", "input": "x"}, timeout=60
        )
        assert response.status_code == 504 and response.json()["error"]["type"] == "timeout_error"
        assert httpx.get(server.url + "/health").status_code == 200


def test_concurrency_limit_answers_429_beyond_the_limit():
    release = asyncio.Event()
    sent: list[dict] = []

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> list[int]:
        limited = ConcurrencyLimit(slow_app, limit=1)
        scope = {"type": "http", "path": "/v1/completions"}

        async def call() -> None:
            await limited(scope, None, lambda event: _record(sent, event))

        first = asyncio.ensure_future(call())
        await asyncio.sleep(0)  # let the first request enter the app
        await call()  # the second is refused at once
        release.set()
        await first
        return [e["status"] for e in sent if e["type"] == "http.response.start"]

    assert asyncio.run(scenario()) == [429, 200]


async def _record(sent: list[dict], event: dict) -> None:
    sent.append(event)


def test_serve_command_usage_errors_exit_2(domain_runs):
    nothing = cli("serve")
    assert nothing.exit_code == 2 and "nothing to serve" in nothing.output
    twice = cli("serve", "--adapter", f"a={domain_runs['chat']}", "--adapter", f"a={domain_runs['chat2']}")
    assert twice.exit_code == 2 and "given twice" in twice.output
    port = cli("serve", "--adapter", f"a={domain_runs['chat']}", "--port", "70000")
    assert port.exit_code == 2 and "--port" in port.output


def test_serve_refuses_a_router_whose_domains_or_fallback_are_not_served(domain_runs, tmp_path):
    from lora_adapt import artifacts as A

    router = tmp_path / "router"
    router.mkdir()
    tickets, binary = str(domain_runs["tickets"]), str(domain_runs["binary"])
    config = {
        "domains": ["tickets", "binary"],
        "adapters": {"tickets": tickets, "binary": binary},
        "chosen": "tfidf_logreg",
        "threshold": 0.5,
        "fallback": "base",
    }
    A.atomic_write_json(router / "route.json", config)
    one = cli("serve", "--adapter", f"tickets={tickets}", "--router", str(router))
    assert one.exit_code == 2 and "'binary'" in one.output and "served: tickets" in one.output
    assert f"--adapter binary={binary}" in one.output and "Traceback" not in one.output
    renamed = cli("serve", "--adapter", f"a={tickets}", "--adapter", f"b={binary}", "--router", str(router))
    assert (
        renamed.exit_code == 2
        and "'tickets', 'binary'" in renamed.output
        and "served: a, b" in renamed.output
    )
    both = ("--adapter", f"tickets={tickets}", "--adapter", f"binary={binary}", "--router", str(router))
    fallback = cli("serve", *both, "--fallback", "nope")
    assert fallback.exit_code == 2 and "--fallback 'nope'" in fallback.output
    assert "served: tickets, binary" in fallback.output
    A.atomic_write_json(router / "route.json", {**config, "fallback": "gone"})
    recorded = cli("serve", *both)
    assert recorded.exit_code == 2 and "fallback" in recorded.output and "'gone'" in recorded.output
    threshold = cli("serve", *both, "--threshold", "1.5")
    assert threshold.exit_code == 2 and "--threshold" in threshold.output


def test_serve_checks_the_router_before_loading_any_model(domain_runs, tmp_path, monkeypatch):
    from lora_adapt import artifacts as A

    loads: list[tuple] = []

    def load(cls, *args, **kwargs):
        loads.append(args)
        raise RuntimeError("a model was loaded before the router was checked")

    monkeypatch.setattr(AdapterSet, "load", classmethod(load))
    tickets, binary = str(domain_runs["tickets"]), str(domain_runs["binary"])
    both = ("--adapter", f"tickets={tickets}", "--adapter", f"binary={binary}")
    router = tmp_path / "router"
    router.mkdir()
    missing = cli("serve", *both, "--router", str(router))
    assert missing.exit_code == 2 and "is not a router" in missing.output and "route.json" in missing.output
    (router / "route.json").write_text('{"domains": ["tickets", "binary"], "chosen": ')
    corrupt = cli("serve", *both, "--router", str(router))
    assert corrupt.exit_code == 2 and "route.json is damaged" in corrupt.output
    assert "route build" in corrupt.output
    config = {
        "domains": ["tickets", "binary"],
        "chosen": "tfidf_logreg",
        "threshold": 0.5,
        "fallback": "tickets",
    }
    A.atomic_write_json(router / "route.json", {**config, "chosen": "svm", "threshold": "high"})
    malformed = cli("serve", *both, "--router", str(router))
    assert malformed.exit_code == 2 and "`chosen` is 'svm'" in malformed.output
    assert "`threshold` is 'high'" in malformed.output
    A.atomic_write_json(router / "route.json", config)
    unserved = cli("serve", "--adapter", f"tickets={tickets}", "--router", str(router))
    assert unserved.exit_code == 2 and "'binary'" in unserved.output and "does not serve" in unserved.output
    no_rows = cli("serve", *both, "--router", str(router))
    assert no_rows.exit_code == 2 and "router_tfidf.json is damaged" in no_rows.output
    assert all("Traceback" not in r.output for r in (missing, corrupt, malformed, unserved, no_rows))
    assert loads == []


def test_a_base_fallback_is_refused_for_a_router_whose_domains_do_not_generate(
    domain_runs, router_run, tmp_path
):
    from lora_adapt import artifacts as A
    from lora_adapt.domains.route_build import build_router
    from lora_adapt.domains.router import check_router
    from lora_adapt.errors import UsageError

    built = A.read_json(router_run / "route.json")
    assert built["fallback"] == "none"  # the default for heads: the top domain answers, marked uncertain
    assert "the top domain answers, marked uncertain" in (router_run / "report.md").read_text()
    tickets, binary = str(domain_runs["tickets"]), str(domain_runs["binary"])
    out = tmp_path / "router"
    with pytest.raises(UsageError) as refused:  # before anything is trained
        build_router({"tickets": tickets, "binary": binary}, out, fallback="base", echo=lambda _: None)
    assert "'base'" in refused.value.message and "/v1/classify" in refused.value.message
    assert "--fallback none" in refused.value.hint and not out.exists()

    out.mkdir()
    A.atomic_write_json(out / "route.json", {**built, "fallback": "base"})  # as route build used to write
    heads = ("--adapter", f"tickets={tickets}", "--adapter", f"binary={binary}")
    served = cli("serve", *heads, "--router", str(out))
    assert served.exit_code == 2 and "the router's fallback (its route.json) 'base'" in served.output
    assert "--fallback none" in served.output and "Traceback" not in served.output
    given = cli("serve", *heads, "--router", str(router_run), "--fallback", "base")
    assert given.exit_code == 2 and "--fallback 'base'" in given.output
    for kinds, fallback in (
        ({"tickets": "single", "binary": "single"}, "none"),
        ({"tickets": "single", "binary": "generation"}, "base"),
    ):
        assert check_router(router_run, kinds, fallback=fallback).fallback == fallback


def test_classify_refuses_top_labels_for_an_adapter_without_label_probabilities(domain_runs):
    aset = AdapterSet.load({"tags": domain_runs["tags"]})
    row = {"tokens": ["John", "flew"]}
    with (
        running(aset, ServeSpec(port=0)) as server,
        httpx.Client(base_url=server.url, timeout=600) as http,
    ):
        refused = http.post("/v1/classify", json={"model": "tags", "input": [row], "top_labels": 3})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["param"] == "top_labels" and "tagging adapter" in error["message"]
        answered = http.post("/v1/classify", json={"model": "tags", "input": [row]})
        assert answered.status_code == 200, answered.text
