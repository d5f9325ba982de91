#!/usr/bin/env python3
"""A real KServe v2 gRPC inference server for the gateway's `triton` engine tests.

It runs KServe's own gRPC servicer (kserve 0.21: InferenceServicer, DataPlane,
its exception-to-status interceptor) over the repository's demo ONNX models,
each executed by ONNX Runtime, so the gateway talks to the same protocol code a
KServe deployment runs. Triton speaks the same protocol (package `inference`,
service `GRPCInferenceService`).

Every version folder `models/<name>/<version>/model.onnx` is served as the
model `<name>-<version>` (dots kept: `resnet18-demo-1.0.0`), with its input
and output names, datatypes and shapes read from the ONNX file (a symbolic
dimension is -1, as the protocol says). On request it adds:

  --slow NAME=SECONDS      `slow-<NAME>`: the same model, sleeping SECONDS
                           before each answer (deadline tests)
  --not-ready NAME         `not-ready-<NAME>`: registered, never ready
                           (ModelReady says false, inference is refused)

It listens on 127.0.0.1:PORT (0: a free port) and prints `LISTENING <port>` on
stdout once the server accepts calls, so a test waits for that line instead of
polling. With --exit-on-stdin-eof it exits when its standard input closes, so
a server started by a test process never outlives it. --tls-cert/--tls-key
serve TLS instead of plain HTTP/2.
"""

import argparse
import asyncio
import logging
import os
import sys
import threading
from concurrent import futures

# gRPC's C core logs handshake failures (which the TLS test provokes) at
# info level: keep test output to what matters. --verbose restores it.
if "--verbose" not in sys.argv:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc

import numpy as np
import onnxruntime
from grpc import aio
from kserve import Model
from kserve.errors import ModelNotReady
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

ONNX_TO_KSERVE = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64"}


def signature(args):
    return [
        {
            "name": a.name,
            "datatype": ONNX_TO_KSERVE.get(a.type, a.type),
            "shape": [d if isinstance(d, int) else -1 for d in a.shape],
        }
        for a in args
    ]


class OnnxModel(Model):
    """One ONNX file run by ONNX Runtime (one thread, deterministic)."""

    def __init__(self, name, path, delay=0.0, ready=True):
        super().__init__(name)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        self.delay = delay
        self.serves = ready
        self.ready = ready

    def load(self):
        # KServe calls load() on a model that is not ready before each
        # inference; the not-ready model stays not ready.
        self.ready = self.serves
        return self.ready

    def get_input_types(self):
        return signature(self.session.get_inputs())

    def get_output_types(self):
        return signature(self.session.get_outputs())

    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        if not self.serves:
            raise ModelNotReady(self.name)
        if self.delay:
            await asyncio.sleep(self.delay)
        feeds = {i.name: i.as_numpy().astype(np.float32, copy=False) for i in payload.inputs}
        wanted = [o.name for o in self.session.get_outputs()]
        results = await asyncio.get_running_loop().run_in_executor(
            None, self.session.run, wanted, feeds
        )
        outputs = []
        for name, value in zip(wanted, results):
            output = InferOutput(name=name, shape=list(value.shape), datatype="FP32")
            output.set_data_from_numpy(np.ascontiguousarray(value, dtype=np.float32), binary_data=True)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id,
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=True,
        )


def demo_models(root):
    for name in sorted(os.listdir(root)):
        name_dir = os.path.join(root, name)
        if not os.path.isdir(name_dir):
            continue
        for version in sorted(os.listdir(name_dir)):
            path = os.path.join(name_dir, version, "model.onnx")
            if os.path.isfile(path):
                yield f"{name}-{version}", path


async def serve(args):
    repository = ModelRepository(models_dir=args.models)
    paths = dict(demo_models(args.models))
    for served, path in paths.items():
        repository.update(OnnxModel(served, path))
    for spec in args.slow:
        name, _, seconds = spec.partition("=")
        repository.update(OnnxModel(f"slow-{name}", paths[name], delay=float(seconds)))
    for name in args.not_ready:
        repository.update(OnnxModel(f"not-ready-{name}", paths[name], ready=False))

    server = aio.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=(ExceptionToStatusInterceptor(),),
        options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20),
        ],
    )
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(DataPlane(model_registry=repository), ModelRepositoryExtension(repository)),
        server,
    )
    address = f"127.0.0.1:{args.port}"
    if args.tls_cert:
        with open(args.tls_cert, "rb") as cert, open(args.tls_key, "rb") as key:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    await server.start()
    print(f"LISTENING {port}", flush=True)
    await server.wait_for_termination()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--models", default=os.path.join(here, "..", "..", "models"))
    parser.add_argument("--slow", action="append", default=[], metavar="NAME=SECONDS")
    parser.add_argument("--not-ready", action="append", default=[], metavar="NAME")
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="log every refused call")
    args = parser.parse_args()
    if not args.verbose:
        # KServe logs each refused call (unknown model, not ready) with a
        # traceback; the tests provoke those on purpose.
        logging.getLogger("kserve").setLevel(logging.CRITICAL)
    if args.exit_on_stdin_eof:
        def exit_when_parent_goes():
            sys.stdin.read()
            os._exit(0)
        threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
