"""One auth model, on a live `cxr serve --db` with CXR_API_TOKEN set: reviewers use the worklist
and the prediction API with their own tokens, a script uses the prediction API with the API
token, the API token is refused on the worklist with a reason, and without a token nothing but
/healthz and the pages answers."""

import httpx
import pytest

WORKLIST = [("GET", "/api/worklist"), ("GET", "/api/worklist/1"),
            ("POST", "/api/worklist/1/review"), ("GET", "/api/worklist/audit"),
            ("GET", "/api/worklist/monitor")]  # fmt: skip
PREDICTION = [("GET", "/api/model"), ("GET", "/api/model/tuning"),
              ("GET", "/api/operating-points"), ("POST", "/api/predict"),
              ("POST", "/api/triage")]  # fmt: skip


def _image(data):
    return sorted((data / "chest_xray_originals" / "train" / "PNEUMONIA").glob("*.jpeg"))[0]


def _client(server, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server["url"], timeout=120, headers=headers)


def _send(client: httpx.Client, method: str, path: str, image=None) -> httpx.Response:
    if method == "GET":
        return client.get(path)
    if path.endswith("/review"):
        return client.post(path, json={"label": "NORMAL"})
    field = "file" if path == "/api/predict" else "files"
    return client.post(path, files=[(field, (image.name, image.read_bytes()))])


def test_the_start_up_line_states_what_is_protected_by_what(worklist_server):
    log = worklist_server["log"].read_text()
    assert (
        "auth: prediction API needs CXR_API_TOKEN or a reviewer token; worklist needs a reviewer "
        "token; the API token is refused there; limits:" in log
    ), log
    assert "OFF" not in log


def test_a_reviewer_reviews_and_uses_the_prediction_api_with_their_own_token(worklist_server, data):
    image = _image(data)
    with _client(worklist_server, worklist_server["reviewer"]) as reviewer:
        listed = reviewer.get("/api/worklist").json()
        assert listed["reviewer"] == {"name": "Dr Ann", "role": "reviewer"}
        entry = listed["rows"][0]["id"]
        assert reviewer.get(f"/api/worklist/{entry}").json()["id"] == entry
        done = reviewer.post(f"/api/worklist/{entry}/review", json={"label": "NORMAL"})
        assert done.json()["review"]["by"] == "Dr Ann", done.text
        predicted = _send(reviewer, "POST", "/api/predict", image)
        assert predicted.status_code == 200 and predicted.json()["predicted"], predicted.text
        assert reviewer.get("/api/worklist/audit").status_code == 403  # roles as before
    with _client(worklist_server, worklist_server["admin"]) as admin:
        trail = admin.get("/api/worklist/audit").json()
    reviews = [e for e in trail if e["action"] == "review"]
    assert [e["actor"] for e in reviews] == ["Dr Ann"] and reviews[0]["detail"]["label"] == "NORMAL"


def test_the_api_token_scripts_the_prediction_api_and_is_refused_on_the_worklist(
    worklist_server, data
):
    image = _image(data)
    with _client(worklist_server, worklist_server["token"]) as script:
        for method, path in PREDICTION:
            answer = _send(script, method, path, image)
            assert answer.status_code == 200, (path, answer.text)
        for method, path in WORKLIST:
            answer = _send(script, method, path)
            assert answer.status_code == 403, (path, answer.text)
            detail = answer.json()["detail"]
            assert "reviewer token" in detail and "cxr reviews add-reviewer" in detail, detail


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "s3cret", "Basic s3cret"])
def test_without_a_valid_token_everything_but_health_and_pages_is_refused(
    worklist_server, data, authorization
):
    image = _image(data)
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=worklist_server["url"], timeout=60, headers=headers) as stranger:
        for method, path in [*PREDICTION, *WORKLIST]:
            answer = _send(stranger, method, path, image)
            assert answer.status_code == 401, (path, answer.text)
            assert "token" in answer.json()["detail"]
        for page in ("/healthz", "/", "/worklist"):  # no data in them: they ask for a token
            assert stranger.get(page).status_code == 200
