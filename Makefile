# cnnserve — plain Makefile. `make` builds bin/cnnserve; `make test` runs every test.
# Objects go to $(BUILD); `make asan` rebuilds everything with ASan+UBSan into build/asan and runs the tests.

CC      ?= cc
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
BIN     ?= bin
# Generic x86-64 baseline; ISA-specific kernels are selected at run time.
OPT     ?= -O2
CFLAGS  ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g $(OPT) -fno-strict-aliasing -pthread -MMD -MP
LDLIBS  += -lopenblas -ljansson -lmicrohttpd -lturbojpeg -lpng -lwebp -lm -pthread
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

CORE_SRC    := $(wildcard core/*.c)
MODELS_SRC  := $(wildcard models/*.c)
IMAGE_SRC   := $(wildcard server/image*.c)
SERVER_SRC  := $(filter-out $(IMAGE_SRC),$(wildcard server/*.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

CORE_OBJ    := $(call obj,$(CORE_SRC))
MODELS_OBJ  := $(call obj,$(MODELS_SRC))
IMAGE_OBJ   := $(call obj,$(IMAGE_SRC))
SERVER_OBJ  := $(call obj,$(SERVER_SRC))

# Each unit test links only what it exercises, so modules build and test independently.
KERNELS_OBJ := $(call obj,$(wildcard core/kernels*.c) core/status.c)
WEIGHTS_OBJ := $(call obj,$(wildcard core/weights*.c) core/status.c)

TEST_BINS := $(BUILD)/tests/test_kernels $(BUILD)/tests/test_weights $(BUILD)/tests/test_image \
             $(BUILD)/tests/test_models

.PHONY: all test unit asan clean deps run weights fuzz bench docker-test
all: $(BIN)/cnnserve

$(BIN)/cnnserve: $(SERVER_OBJ) $(IMAGE_OBJ) $(MODELS_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/test_kernels: $(BUILD)/tests/unit/test_kernels.o $(KERNELS_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_weights: $(BUILD)/tests/unit/test_weights.o $(WEIGHTS_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_image: $(BUILD)/tests/unit/test_image.o $(IMAGE_OBJ) $(BUILD)/core/status.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_models: $(BUILD)/tests/unit/test_models.o $(IMAGE_OBJ) $(MODELS_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(TEST_BINS)

# Every test program and script; tests/run.sh prints the final "N passed, M failed" line.
test: $(BIN)/cnnserve $(TEST_BINS)
	BUILD=$(BUILD) BIN=$(BIN) PYTHON=$(PYTHON) bash tests/run.sh

asan:
	$(MAKE) SAN=1 BUILD=build/asan BIN=build/asan/bin test

clean:
	rm -rf build bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
