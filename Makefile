# cnnserve — plain Makefile. `make` builds bin/cnnserve; `make test` runs every test.
# Objects go to $(BUILD); `make asan` rebuilds everything with ASan+UBSan into build/asan and runs the tests.
# Sections: configuration, build, tests, reference data and weights, tools (profiling, fuzzing),
# set-up / run / deploy, benchmarks, evaluation, housekeeping.

# ------------------------------------------------------------------------------------ configuration
CC      ?= cc
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
BIN     ?= bin
CNN_CACHE ?= cache
# Generic x86-64 baseline; ISA-specific kernels are selected at run time.
OPT     ?= -O2
CFLAGS  ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g $(OPT) -fno-strict-aliasing -pthread -MMD -MP
LDLIBS  += -lopenblas -ljansson -lmicrohttpd -ljpeg -lturbojpeg -lpng -lwebp -lm -pthread
# The XNNPACK peer of `make bench` (and its test) builds where libxnnpack-dev is installed.
XNNPACK_OK   := $(shell test -f /usr/include/xnnpack.h -a -f /usr/include/pthreadpool.h && echo 1)
XNNPACK_PEER := $(if $(XNNPACK_OK),$(BUILD)/bench/peer_xnnpack)
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

.PHONY: all test unit asan clean deps deps-apt deps-npm run weights ref fuzz fuzz-request fuzz-safetensors soak bench \
        docker-test paper print-test-bins bench-train

# -------------------------------------------------------------------------------------------- build
CORE_SRC    := $(wildcard core/*.c)
MODELS_SRC  := $(wildcard models/*.c)
IMAGE_SRC   := $(wildcard server/image*.c)
SERVER_SRC  := $(filter-out $(IMAGE_SRC),$(wildcard server/*.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

CORE_OBJ    := $(call obj,$(CORE_SRC))
MODELS_OBJ  := $(call obj,$(MODELS_SRC))
IMAGE_OBJ   := $(call obj,$(IMAGE_SRC))
SERVER_OBJ  := $(call obj,$(SERVER_SRC))

all: $(BIN)/cnnserve

$(BIN)/cnnserve: $(SERVER_OBJ) $(IMAGE_OBJ) $(MODELS_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# server/openapi.c embeds openapi.yaml with .incbin; server/web_assets.c the web page the same way.
$(BUILD)/server/openapi.o: openapi.yaml
$(BUILD)/server/web_assets.o: server/web/index.html server/web/app.js server/web/app.css

# -------------------------------------------------------------------------------------------- tests
# Unit test programs (tests/unit/test_*.c). Each links only what it exercises, so modules build and
# test independently. tests/run.sh runs exactly the programs listed in TEST_BINS (a stale
# $(BUILD)/tests/test_* from an older list is not run), then tests/*/test_*.py|sh.
KERNELS_OBJ := $(call obj,$(wildcard core/kernels*.c) core/cpu.c core/status.c)
WEIGHTS_OBJ := $(call obj,$(wildcard core/weights*.c) core/status.c)

TEST_BINS := $(BUILD)/tests/test_kernels $(BUILD)/tests/test_backward $(BUILD)/tests/test_weights \
             $(BUILD)/tests/test_image $(BUILD)/tests/test_models $(BUILD)/tests/test_threads $(BUILD)/tests/test_server \
             $(BUILD)/tests/test_dataset $(BUILD)/tests/test_train $(BUILD)/tests/test_zoo \
             $(BUILD)/tests/test_kserve $(BUILD)/tests/test_optim $(BUILD)/tests/test_augment
TEST_BINS += $(BUILD)/tests/test_model_train
# Helper programs the test scripts drive.
TEST_TOOLS := $(BUILD)/tests/image_dump $(BUILD)/tests/train_grad $(BUILD)/tests/eval_metrics_tool \
              $(BUILD)/tests/optim_tool $(BUILD)/tests/layer_prof $(BUILD)/tests/exec_timeline $(BUILD)/tests/bwd_ops \
              $(BUILD)/tests/exec_modes
TEST_TOOLS += $(BUILD)/tests/train_model_ref

$(BUILD)/tests/test_kernels: $(BUILD)/tests/unit/test_kernels.o $(KERNELS_OBJ)
$(BUILD)/tests/test_backward: $(BUILD)/tests/unit/test_backward.o $(KERNELS_OBJ)
$(BUILD)/tests/test_weights: $(BUILD)/tests/unit/test_weights.o $(WEIGHTS_OBJ)
$(BUILD)/tests/test_image:   $(BUILD)/tests/unit/test_image.o $(IMAGE_OBJ) $(BUILD)/core/status.o $(BUILD)/core/cpu.o $(BUILD)/core/threadpool.o
$(BUILD)/tests/test_models:  $(BUILD)/tests/unit/test_models.o $(IMAGE_OBJ) $(MODELS_OBJ) $(CORE_OBJ)
$(BUILD)/tests/test_threads: $(BUILD)/tests/unit/test_threads.o $(MODELS_OBJ) $(CORE_OBJ)
# Full fine-tuning engine: thread bit-identity, finite differences, eval/save vs inference.
$(BUILD)/tests/test_model_train: $(BUILD)/tests/unit/test_model_train.o $(MODELS_OBJ) $(CORE_OBJ)
# The HTTP service's pure helpers (multipart, flags); tests/e2e/test_e2e.py drives the real binary.
$(BUILD)/tests/test_server:  $(BUILD)/tests/unit/test_server.o $(BUILD)/server/multipart.o \
                             $(BUILD)/server/config.o $(BUILD)/server/cpus.o $(BUILD)/server/log.o $(BUILD)/core/status.o
$(BUILD)/tests/test_dataset: $(BUILD)/tests/unit/test_dataset.o $(BUILD)/server/dataset.o $(BUILD)/core/status.o
$(BUILD)/tests/test_train:   $(BUILD)/tests/unit/test_train.o $(BUILD)/core/kernels_train.o $(BUILD)/core/train.o \
                             $(BUILD)/core/optim.o $(BUILD)/core/status.o
$(BUILD)/tests/test_optim:   $(BUILD)/tests/unit/test_optim.o $(BUILD)/core/optim.o $(BUILD)/core/status.o
$(BUILD)/tests/test_augment: $(BUILD)/tests/unit/test_augment.o $(BUILD)/server/augment.o $(IMAGE_OBJ) $(BUILD)/core/status.o $(BUILD)/core/cpu.o $(BUILD)/core/threadpool.o
# Model generations: discovery, failed files, reload (needs ../shared/weights).
$(BUILD)/tests/test_zoo:     $(BUILD)/tests/unit/test_zoo.o $(BUILD)/server/zoo.o $(BUILD)/server/log.o \
                             $(MODELS_OBJ) $(CORE_OBJ)
# The Open Inference Protocol code on a real model (tests/e2e/test_kserve.py drives the binary).
$(BUILD)/tests/test_kserve:  $(BUILD)/tests/unit/test_kserve.o $(call obj,server/kserve.c server/base64.c \
                             server/http_status.c server/pipeline.c server/zoo.c server/log.c) $(IMAGE_OBJ) $(MODELS_OBJ) $(CORE_OBJ)
# image_dump feeds the image fidelity/corpus tests; train_grad runs the head-training kernels on one
# batch for tests/train/test_train_torch.py (vs PyTorch); eval_metrics_tool prints the metrics of a
# score matrix for tests/eval/test_eval_metrics.py.
$(BUILD)/tests/image_dump:   $(BUILD)/tests/tools/image_dump.o $(IMAGE_OBJ) $(BUILD)/core/status.o $(BUILD)/core/cpu.o $(BUILD)/core/threadpool.o
$(BUILD)/tests/train_grad:   $(BUILD)/tests/tools/train_grad.o $(BUILD)/core/kernels_train.o $(BUILD)/core/optim.o \
                             $(BUILD)/core/status.o
# optim_tool runs core/optim.h for tests/train/test_optim_torch.py (vs torch.optim).
$(BUILD)/tests/optim_tool:   $(BUILD)/tests/tools/optim_tool.o $(BUILD)/core/optim.o $(BUILD)/core/status.o
# bwd_ops runs one backward kernel of core/kernels.h for tests/train/test_backward_torch.py.
$(BUILD)/tests/bwd_ops:      $(BUILD)/tests/tools/bwd_ops.o $(KERNELS_OBJ)
# train_model_ref: training steps of a model (models/model_train.h) with core/optim.h: gradients, saved file,
# eval logits (tests/train/test_train_models.py), --repeat for a step's time.
$(BUILD)/tests/train_model_ref: $(BUILD)/tests/tools/train_model_ref.o $(MODELS_OBJ) $(CORE_OBJ)
$(BUILD)/tests/eval_metrics_tool: $(BUILD)/tests/tools/eval_metrics_tool.o $(BUILD)/server/eval_metrics.o \
                             $(BUILD)/server/eval_json.o $(BUILD)/core/status.o
# layer_prof: per-node times of one model's graph, by kernel kind (make bench; kernel tuning)
$(BUILD)/tests/layer_prof:   $(BUILD)/tests/tools/layer_prof.o $(MODELS_OBJ) $(CORE_OBJ)
# exec_timeline: per node and thread, compute and wait times of whole multi-thread inferences
$(BUILD)/tests/exec_timeline: $(BUILD)/tests/tools/exec_timeline.o $(MODELS_OBJ) $(CORE_OBJ)
# exec_modes: two threads' compute one after the other on alternating cores vs at once vs one core
$(BUILD)/tests/exec_modes: $(BUILD)/tests/tools/exec_modes.o $(MODELS_OBJ) $(CORE_OBJ)

$(TEST_BINS) $(TEST_TOOLS):
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(TEST_BINS)

# Every test program and script; tests/run.sh prints the plan first and the final
# "N passed, M failed, K skipped" line last.
test: $(BIN)/cnnserve $(TEST_BINS) $(TEST_TOOLS) $(XNNPACK_PEER) $(BUILD)/bench/stretch_probe $(CNN_CACHE)/ref/manifest.json $(CNN_CACHE)/ref/accuracy.json
	BUILD=$(BUILD) BIN=$(BIN) PYTHON=$(PYTHON) TEST_BINS="$(TEST_BINS)" bash tests/run.sh

asan:
	$(MAKE) SAN=1 BUILD=build/asan BIN=build/asan/bin test

# The list tests/run.sh runs when started by hand.
print-test-bins:
	@echo $(TEST_BINS)

# ---------------------------------------------------------------------- reference data and weights
# `make ref` (and `make test`) regenerate $(CNN_CACHE)/ref only when the generator, the converter or
# the safetensors writer changed or the manifest is missing; without torch the generator writes
# nothing and the C reference tests skip. `make weights` downloads the official torchvision
# checkpoints into weights/download (needs internet) and converts them to weights/NAME.safetensors.
ref: $(CNN_CACHE)/ref/manifest.json $(CNN_CACHE)/ref/accuracy.json
$(CNN_CACHE)/ref/manifest.json: tests/ref/gen_reference.py deploy/convert_torchvision.py deploy/safetensors_io.py
	CNN_CACHE=$(CNN_CACHE) $(PYTHON) tests/ref/gen_reference.py
# PyTorch's accuracy (and per-photo predictions) of the real weights in ../shared on its 1000 photos.
$(CNN_CACHE)/ref/accuracy.json: tests/ref/gen_accuracy.py tests/ref/gen_reference.py deploy/safetensors_io.py
	CNN_CACHE=$(CNN_CACHE) $(PYTHON) tests/ref/gen_accuracy.py

weights:
	$(PYTHON) deploy/convert_torchvision.py --all --download-dir weights/download --out-dir weights

# -------------------------------------------------------------------- tools: profiling and fuzzing
# peer_xnnpack: the XNNPACK peer of `make bench` (bench/peer_xnnpack.c, not part of bin/cnnserve),
# built only where Debian's libxnnpack-dev and libpthreadpool-dev headers are installed (XNNPACK_PEER,
# see configuration); without them the bench skips the peer and its test skips, saying so.
$(BUILD)/bench/peer_xnnpack: $(BUILD)/bench/peer_xnnpack.o $(MODELS_OBJ) $(CORE_OBJ) $(BUILD)/server/config.o \
                             $(BUILD)/server/cpus.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lXNNPACK -lpthreadpool $(LDLIBS)

# stretch_probe: which instructions slow down in the machine's slow stretches (bench/stretch_probe.c,
# standalone; README, Performance, session 15). Built with the tests, run by hand.
$(BUILD)/bench/stretch_probe: $(BUILD)/bench/stretch_probe.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# `make fuzz` runs the libFuzzer target for FUZZ_SECONDS, seeded from the generated corpus
# ($CNN_CACHE/corpus, default ./cache/corpus).
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang-14
FUZZ_CACHE   ?= $(or $(CNN_CACHE),cache)
$(BUILD)/fuzz/fuzz_image: tests/fuzz/fuzz_image.c $(IMAGE_SRC) core/status.c core/cpu.c $(wildcard server/image*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -o $@ tests/fuzz/fuzz_image.c $(IMAGE_SRC) core/status.c core/cpu.c \
	    -ljpeg -lturbojpeg -lpng -lwebp -lm

fuzz: $(BUILD)/fuzz/fuzz_image
	$(PYTHON) tests/corpus/gen_corpus.py $(FUZZ_CACHE)/corpus
	@mkdir -p $(FUZZ_CACHE)/fuzz-corpus $(FUZZ_CACHE)/fuzz-artifacts
	$(BUILD)/fuzz/fuzz_image -max_total_time=$(FUZZ_SECONDS) -max_len=262144 -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_CACHE)/fuzz-artifacts/ \
	    $(FUZZ_CACHE)/fuzz-corpus $(FUZZ_CACHE)/corpus

# Request-layer and safetensors fuzzers: `make fuzz-request` / `make fuzz-safetensors` run FUZZ_RUNS
# executions from the seeds in tests/fuzz/seeds/ (the grown corpus is kept in $(FUZZ_CACHE)).
FUZZ_RUNS  ?= 1000000
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
$(BUILD)/fuzz/fuzz_request: tests/fuzz/fuzz_request.c server/http_parse.c server/multipart.c core/status.c \
                            server/http_parse.h server/multipart.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $(filter %.c,$^)

$(BUILD)/fuzz/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c core/weights.c core/status.c core/weights.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $(filter %.c,$^) -ljansson -lm

fuzz-request fuzz-safetensors: fuzz-%: $(BUILD)/fuzz/fuzz_%
	@mkdir -p $(FUZZ_CACHE)/fuzz-$*-corpus $(FUZZ_CACHE)/fuzz-artifacts
	$(BUILD)/fuzz/fuzz_$* -runs=$(FUZZ_RUNS) -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_CACHE)/fuzz-artifacts/ $(FUZZ_CACHE)/fuzz-$*-corpus tests/fuzz/seeds/$*

# `make soak`: SOAK_SECONDS (default 600) of mixed good/broken traffic, RSS sampled; fails on a 5xx
# other than 503 (and two prescribed 501/505), a dead server or RSS growth > 10 %. Not in `make test`.
soak: $(BIN)/cnnserve
	BIN=$(BIN) $(PYTHON) tests/soak/soak.py

# --------------------------------------------------------------------------- set-up, run, deploy
# Debian 12 package names. DEPS_BUILD compiles bin/cnnserve; DEPS_TEST is what `make test` uses.
DEPS_BUILD := build-essential pkg-config libopenblas-dev libjansson-dev libmicrohttpd-dev \
              libturbojpeg0-dev libjpeg-dev libpng-dev libwebp-dev
# libxnnpack-dev (whose headers need libpthreadpool-dev) builds the XNNPACK peer of `make bench` and its test;
# libjpeg-turbo-progs' jpegtran adds restart markers to the intake bench's photos.
DEPS_TEST  := curl python3 python3-torch python3-torchvision python3-pil python3-numpy python3-yaml python3-matplotlib \
              clang-14 libclang-rt-14-dev libfuzzer-14-dev llvm-14 wrk valgrind nodejs \
              chromium chromium-driver python3-selenium libxnnpack-dev libpthreadpool-dev libjpeg-turbo-progs
# Installs only the missing packages (apt-get update first, only then), with apt's recommends as a
# plain `apt-get install` would; as root, or via sudo. Then the npm tools of `make test` (the
# OpenAPI linter, pinned in tests/lint/package-lock.json) into tests/lint/node_modules, when missing.
deps: deps-apt deps-npm

deps-apt:
	@missing=; for p in $(DEPS_BUILD) $(DEPS_TEST); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' \
	        || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all $(words $(DEPS_BUILD) $(DEPS_TEST)) packages already installed"; exit 0; fi; \
	echo "deps: installing:$$missing"; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	else echo "deps: not root and no sudo; install as root:$$missing" >&2; exit 1; fi; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing

deps-npm: deps-apt
	@if [ -x tests/lint/node_modules/.bin/redocly ]; then echo "deps: tests/lint/node_modules already installed"; \
	elif ! command -v npm >/dev/null 2>&1; then echo "deps: no npm: the OpenAPI lint of make test will skip"; \
	else echo "deps: npm ci in tests/lint (@redocly/cli)"; \
	    npm ci --prefix tests/lint --no-audit --no-fund --loglevel=error; fi

# Serve every *.safetensors of RUN_WEIGHTS (default: ./weights from `make weights`, else ../shared/weights).
RUN_WEIGHTS ?= $(firstword $(patsubst %/,%,$(dir $(wildcard weights/*.safetensors ../shared/weights/*.safetensors))))
RUN_ARGS    ?=
run: $(BIN)/cnnserve
	@if [ -z "$(RUN_WEIGHTS)" ]; then \
	    echo "run: no *.safetensors in ./weights or ../shared/weights: run 'make weights' (needs internet)" \
	         "or pass RUN_WEIGHTS=DIR" >&2; exit 1; fi
	$(BIN)/cnnserve serve --weights-dir $(RUN_WEIGHTS) $(RUN_ARGS)

# Build the image with local weights (podman via container-check.sh), run it, classify, SIGTERM.
docker-test:
	bash tests/deploy/docker_check.sh

# ------------------------------------------------------------------------------------- benchmarks
# `make bench`: per model, cnnserve vs ONNX Runtime (npm onnxruntime-node in bench/node_modules) vs
# PyTorch at 1 and 2 threads (and XNNPACK for the mobile models: bench/peer_xnnpack.c, built where
# libxnnpack-dev is installed, else skipped with the reason) on the random weights of `make ref`, then
# wrk against the service; writes bench/results/latest.json and latest.md (~15 min on 2 cores).
# BENCH_ARGS adds flags of bench/run_bench.py (e.g. --iters 300, --no-wrk, --no-peers). Never fails on timing.
# Then the training section (`make bench-train` alone): training images/s at batch 32, ours
# (`cnnserve bench --train`) vs PyTorch at 1 and 2 threads, all five models (bench/run_bench_train.py,
# bench/results/train.json and train.md); BENCH_TRAIN_ARGS adds its flags (e.g. --steps 4, --rounds 3).
BENCH_ARGS ?=
BENCH_TRAIN_ARGS ?=
bench: $(BIN)/cnnserve $(BUILD)/tests/layer_prof $(CNN_CACHE)/ref/manifest.json $(XNNPACK_PEER)
	$(PYTHON) bench/run_bench.py --bin $(BIN)/cnnserve --weights-dir $(CNN_CACHE)/ref \
	    --cache-dir $(CNN_CACHE)/bench --python $(PYTHON) --layer-prof $(BUILD)/tests/layer_prof \
	    --xnnpack-bin $(BUILD)/bench/peer_xnnpack $(BENCH_ARGS)
	$(MAKE) bench-train

bench-train: $(BIN)/cnnserve $(CNN_CACHE)/ref/manifest.json
	$(PYTHON) bench/run_bench_train.py --bin $(BIN)/cnnserve --weights-dir $(CNN_CACHE)/ref \
	    --cache-dir $(CNN_CACHE)/bench --python $(PYTHON) $(BENCH_TRAIN_ARGS)

# ------------------------------------------------------------------------------------ evaluation
# `make paper`: the paper's protocol for every base model in PAPER_WEIGHTS (./weights when `make weights`
# filled it, else ../shared/weights): cnnserve train --mode $(PAPER_MODE) on monkeys and fruits-360,
# cnnserve eval, figures, paper/REPORT.md (generated; paper/out/ holds models, logs, reports, figures).
# PAPER_ARGS adds flags of tools/paper.py (e.g. --publish paper/results to refresh the committed copy).
PAPER_MODE    ?= head
PAPER_WEIGHTS ?= $(RUN_WEIGHTS)
PAPER_DATA    ?= ../shared/data
PAPER_ARGS    ?=
paper: $(BIN)/cnnserve
	$(PYTHON) tools/paper.py --bin $(BIN)/cnnserve --weights-dir $(PAPER_WEIGHTS) --data-dir $(PAPER_DATA) \
	    --out-dir paper --mode $(PAPER_MODE) --python $(PYTHON) $(PAPER_ARGS)

# ---------------------------------------------------------------------------------- housekeeping
clean:
	rm -rf build bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
