"""A stand-in `kubectl` (install it with tests.helpers.standin_tools.install_standin): no
cluster runs on the test machines, so the kubernetes launcher is tested at the command
boundary. It records each call's argv and stdin, answers apply / rollout status / wait /
get / logs / delete as kubectl would, and its `port-forward` serves /health and
/v1/models on loopback from the rendered pod's args (served name, model path)."""

FAKE_KUBECTL = r'''
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import yaml
log, state_path = os.environ["FAKE_KUBECTL_LOG"], os.environ["FAKE_KUBECTL_STATE"]
args = sys.argv[1:]
stdin = sys.stdin.read() if args[-2:] == ["-f", "-"] else None
with open(log, "a") as handle:
    handle.write(json.dumps({"argv": args, "stdin": stdin}) + "\n")
state = json.load(open(state_path)) if os.path.exists(state_path) else {}
def save():
    json.dump(state, open(state_path, "w"))
scope, rest = {}, []
i = 0
while i < len(args):
    if args[i] in ("--context", "--namespace"):
        scope[args[i]] = args[i + 1]; i += 2
    else:
        rest.append(args[i]); i += 1
def not_found(ref):
    kind, name = ref.split("/", 1)
    sys.stderr.write(f'Error from server (NotFound): {kind}s "{name}" not found\n')
    sys.exit(1)
verb = rest[0]
if verb == "apply":
    for doc in yaml.safe_load_all(stdin):
        ref = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
        print(f"{ref} {'configured' if ref in state else 'created'}")
        state[ref] = doc
        if doc["kind"] == "InferenceService":  # KServe's controller, RawDeployment mode
            state[f"deployment/{doc['metadata']['name']}-predictor"] = {
                "kind": "Deployment", "spec": {"template": {"spec": {
                    "containers": doc["spec"]["predictor"]["containers"]}}}}
    save()
elif verb == "rollout":
    ref = rest[2]
    if ref not in state:
        not_found(ref)
    if os.environ.get("FAKE_KUBECTL_STUCK"):
        sys.stderr.write(f'error: deployment "{ref.split("/")[1]}" exceeded its progress '
                         'deadline\n')
        sys.exit(1)
    print(f'deployment "{ref.split("/")[1]}" successfully rolled out')
elif verb == "wait":
    ref = rest[2]
    if ref not in state:
        not_found(ref)
    print(f"{ref} condition met")
elif verb == "get":
    if rest[1] not in state:
        not_found(rest[1])
    print(rest[1])
elif verb == "logs":
    if rest[1] not in state:
        not_found(rest[1])
    tail = int(rest[rest.index("--tail") + 1])
    print("\n".join([f"INFO {i}" for i in range(50)][-tail:]))
elif verb == "delete":
    ref = rest[1]
    if ref in state:
        del state[ref]
        state.pop(f"deployment/{ref.split('/')[1]}-predictor", None)
        save()
        print(f'{ref} deleted')
    elif "--ignore-not-found" not in rest:
        not_found(ref)
elif verb == "port-forward":
    ref, ports = rest[3], rest[4]
    if ref not in state:
        not_found(ref)
    args_ = state[ref]["spec"]["template"]["spec"]["containers"][0]["args"]
    name = args_[args_.index("--served-model-name") + 1]
    models = json.dumps({"data": [{"id": name, "root": args_[0]}]}).encode()
    class Pod(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def do_GET(self):
            # kubectl's line per connection, padded: an undrained pipe fills in ~60 requests
            print(f"Handling connection for {local}" + " " * 1000, flush=True)
            body = models if self.path == "/v1/models" else b""
            self.send_response(200 if self.path in ("/health", "/v1/models") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    local = int(ports.split(":")[0])
    server = ThreadingHTTPServer(("127.0.0.1", local), Pod)
    print(f"Forwarding from 127.0.0.1:{local} -> {ports.split(':')[1]}", flush=True)
    server.serve_forever()
else:
    sys.stderr.write(f'error: unknown command "{verb}" for "kubectl"\n')
    sys.exit(1)
'''
