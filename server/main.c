/* cnnserve: `serve` runs the HTTP service, `classify` classifies files from the command line. */
#include <stdio.h>
#include <string.h>

#include "../core/cpu.h"
#include "cli.h"
#include "version.h"

static const char usage_text[] =
    "usage: cnnserve <command> [flags]\n"
    "\n"
    "commands:\n"
    "  serve      run the HTTP service (POST /v1/classify, GET /v1/models, /healthz, /readyz, /metrics)\n"
    "  classify   classify image files with the same code path as the service\n"
    "  bench      time model inference at batch 1 against the machine's sgemm peak\n"
    "  eval       accuracy, cross-entropy, ROC/AUC and test time per image of models on labelled images\n"
    "  train      transfer learning: a new classifier for your own class folders on an ImageNet model\n"
    "\n"
    "  cnnserve <command> --help   flags of a command\n"
    "  cnnserve --version          print the version\n";

int main(int argc, char **argv)
{
    cpu_reexec_for_openblas(argv);
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("cnnserve %s\n", CNNSERVE_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "serve")) return serve_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "classify")) return classify_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return bench_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "eval")) return eval_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "train")) return train_main(argc - 2, argv + 2);
    fprintf(stderr, "cnnserve: unknown command '%s'\n\n%s", cmd, usage_text);
    return 2;
}
