"""The module server hands each decode thread a run of a request's images (modules/engine.py
analyse_all): the answers stay in order, a bad image inside a run is an error of its own, and each
image gets the same hashes as when it is sent alone."""

from __future__ import annotations

import base64

import httpx

from deeplens.samples import jpeg_bytes, synthetic_image


def test_a_batch_answers_each_image_in_order_as_alone(modules_url: str):
    images = [base64.b64encode(jpeg_bytes(synthetic_image(seed, (300, 200)))).decode() for seed in range(9)]
    bad = {2: base64.b64encode(b"not an image").decode(), 5: base64.b64encode(b"GIF89a broken").decode()}
    images = [bad.get(index, data) for index, data in enumerate(images)]
    with httpx.Client(base_url=modules_url, timeout=60) as client:
        def features(batch: list[str]) -> list[dict]:
            body = {"images": [{"id": str(i), "data": data} for i, data in enumerate(batch)], "features": ["dihedral"]}
            response = client.post("/v1/features", json=body)
            assert response.status_code == 200, response.text
            return response.json()["results"]

        results = features(images)
        assert [result["id"] for result in results] == [str(i) for i in range(len(images))]
        for index, (data, result) in enumerate(zip(images, results)):
            if index in bad:
                assert "error" in result and "phash_dihedral" not in result
            else:
                [alone] = features([data])
                assert result["phash_dihedral"] == alone["phash_dihedral"], index
