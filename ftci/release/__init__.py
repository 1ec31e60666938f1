"""The merge half: `ftci release` turns the evaluated candidate into a versioned, quantized,
tagged artifact in a registry.

- `candidate`: find the run the pull request evaluated (the local state directory's `runs/`
  or the PR workflow's `ftci-train-eval` artifact), re-verified by digest;
- `merge`: the adapter into the base it was trained against (QLoRA: the dequantised 4-bit base);
- `quantize`: the serving artifact (compressed-tensors W8A8 INT8 by default, llm-compressor in
  its own environment); `qgate`: the quantization gate through the serving engine;
- `version`: semver from what changed; `card`: the model card and release notes;
- `registry/`: local (SQLite ledger + content-addressed blobs), hf, mlflow;
- `gitops`: the annotated tag `<project>@vX.Y.Z` and the GitHub Release;
- `flow`: the steps in order, resumable, idempotent per commit.

A release directory (what the registry stores for one version):

    release.json                the ReleaseManifest (ftci/contracts/release.py)
    README.md                   the model card (Hub-compatible YAML header)
    adapter/                    the LoRA adapter (absent for method: full)
    model/                      the served artifact (quantized; merged 16-bit for bnb-nf4/none)
    eval/results.json           the pull request's eval results (EvalResults)
    quantization/results.json   the quantization gate's per-item results (EvalResults)
"""
