"""Steps/s of a tiny text-to-image run on the shapes world: rendering on the fly vs cache_on_device (1 thread)."""
import json, shutil, time, torch
from noisecraft.api import train
torch.set_num_threads(1)
base = {"data": "shapes", "resolution": 32, "num_examples": 4096, "preset": "tiny", "unet": {"attention_resolutions": [16]},
        "text_encoder": {"name": "learned", "dim": 32, "layers": 1, "heads": 2},
        "train": {"steps": 60, "batch_size": 64, "checkpoint_every": 0, "sample_every": 0, "log_every": 20}}
for cached in (False, True, False, True):
    out = "/tmp/cache_speed_run"
    shutil.rmtree(out, ignore_errors=True)
    cfg = json.loads(json.dumps(base)); cfg["train"]["cache_on_device"] = cached; cfg["out_dir"] = out
    t = time.perf_counter(); r = train(cfg, progress=False); total = time.perf_counter() - t
    rates = [json.loads(l)["it_per_s"] for l in open(out + "/log.jsonl") if '"it_per_s"' in l]
    cache = [json.loads(l) for l in open(out + "/log.jsonl") if "data_cache" in l]
    print(f"cache_on_device={cached}: steps/s (windows 2-3) {sum(rates[1:])/len(rates[1:]):.2f}; total {total:.1f} s;"
          f" cache {cache[0]['seconds']:.1f} s" if cache else f"cache_on_device={cached}: steps/s (windows 2-3) {sum(rates[1:])/len(rates[1:]):.2f}; total {total:.1f} s", flush=True)
