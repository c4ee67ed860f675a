/* Full fine-tuning of a model (issue #13): the architecture's graph built in training mode
 * (BatchNorm not folded, activations and dropout as their own nodes, a batch of images), forward in
 * training mode keeping what the backward pass needs in one planned arena (no allocation per step),
 * softmax cross-entropy, backward through every node and the gradient of every trainable tensor
 * under its torchvision name. A step on any number of threads gives bit-identical gradients (images
 * split over the threads for the per-image work, parameter gradients summed over the images in a
 * fixed order, BatchNorm split by channels). InceptionV3 trains without its auxiliary classifier
 * (aux_logits=False); its tensors are copied unchanged by model_train_save. The optimizer is the
 * caller's (core/optim.h): it updates model_param.data in place between steps. Some layers call
 * OpenBLAS from the engine's threads: run it single-threaded (openblas_set_num_threads(1)), else
 * its own threads spin against the engine's (measured: a quarter of a step's time in sched_yield). */
#ifndef CNN_MODEL_TRAIN_H
#define CNN_MODEL_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

typedef enum { MODEL_BN_FROZEN = 0, MODEL_BN_TRAIN } model_bn_mode;

typedef struct {
    int max_batch;        /* images per step, >= 1 */
    int n_threads;        /* 1..MODEL_MAX_THREADS */
    model_bn_mode bn;     /* FROZEN: running statistics normalize (fixed), gamma/beta trainable;
                             TRAIN: batch statistics, running stats updated with torchvision's
                             momentum (MobileNetV3 0.01, others 0.1), as model.train() */
    int dropout;          /* 1: the architecture's dropout layers active in training, 0: off */
    uint64_t seed;        /* dropout masks (and the new head's initialization) */
    int n_classes;        /* > 0: replace the head (model_arch.head) with a new K-output layer,
                             initialized as torch.nn.Linear does, from seed; 0: keep the file's */
} model_train_opts;

typedef struct model_train model_train;

typedef struct {          /* one trainable tensor, torchvision name and shape */
    const char *name;
    int n_dims;
    int64_t shape[4];
    size_t n;
    float *data, *grad;   /* grad: written by model_train_step */
    int is_head;          /* belongs to the new/last layer (--lr-backbone applies to the rest) */
    int is_bn;            /* BatchNorm gamma/beta (no weight decay when asked) */
} model_param;

/* Builds the training graph of arch (name or alias, see model.h) from a safetensors file (its
 * __metadata__ padding (tf_same) and crop size are honoured as model_load does) and allocates every
 * buffer a step needs. Errors: CNN_ERR_ARG (unknown arch, bad opts), the weights' errors, CNN_ERR_NOMEM. */
cnn_status model_train_init(model_train **out, const char *arch, const char *weights_path,
                            const model_train_opts *o, char *err, size_t err_bytes);
void model_train_free(model_train *t);

int model_train_n_params(const model_train *t);
model_param *model_train_param(model_train *t, int i);
/* Input side S of the images (224, 299, or the file's crop) and classes K of the logits. */
int model_train_input_size(const model_train *t);
int model_train_num_classes(const model_train *t);

/* forward (training mode) + softmax cross-entropy (mean over n) + backward: every grad
   overwritten; input n x 3 x S x S normalized floats, n <= max_batch; step numbers the
   dropout masks. Returns the mean loss via *loss and the top-1 hits via *n_correct (either may be
   NULL). In MODEL_BN_TRAIN mode the running statistics are updated. CNN_ERR_ARG: n out of range, a
   label outside 0..K-1, or in MODEL_BN_TRAIN mode a BatchNorm over a single value per channel
   (n = 1 on a 1 x 1 map, as PyTorch refuses). */
cnn_status model_train_step(model_train *t, const float *input, const int *labels, int n,
                            uint64_t step, double *loss, int *n_correct);
/* eval-mode forward (running stats, no dropout) of n images (n <= max_batch) with the current
   parameters: n x K logits. */
cnn_status model_train_eval(model_train *t, const float *input, int n, float *logits);
/* write every tensor under torchvision names (BN running stats and num_batches_tracked
   included; the base file's tensors the graph does not train copied unchanged) with the
   given __metadata__ pairs (meta_kv: key0, value0, key1, value1, ...; n_meta pairs), atomically
   (core/weights_write.c) */
cnn_status model_train_save(const model_train *t, const char *path, const char *const *meta_kv,
                            int n_meta, char *err, size_t err_bytes);
size_t model_train_bytes(const model_train *t); /* arenas + parameters + gradients */

#endif
