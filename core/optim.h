/* Optimizers for training: SGD (momentum, Nesterov, weight decay), Adam and AdamW computed as
 * torch.optim does in PyTorch 1.13 (same float32 operation order, bias correction and eps placement),
 * two learning-rate groups (the new head and the backbone), learning-rate schedules as pure
 * functions of the step, gradient clipping by global L2 norm as torch.nn.utils.clip_grad_norm_, and
 * the state (momentum / moment buffers, step count) saved to and loaded from a checkpoint stream.
 * Every step walks the parameters in their fixed order on one thread: deterministic; no allocation
 * after optim_init. */
#ifndef CNN_OPTIM_H
#define CNN_OPTIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

typedef enum { OPTIM_SGD = 0, OPTIM_ADAM, OPTIM_ADAMW } optim_kind;

/* Learning-rate groups: the new last layer and everything else (`--lr-backbone`). */
enum { OPTIM_GROUP_HEAD = 0, OPTIM_GROUP_BACKBONE = 1, OPTIM_N_GROUPS = 2 };

typedef struct {
    optim_kind kind;
    double lr[OPTIM_N_GROUPS];   /* base learning rate of each group, >= 0 */
    double weight_decay;         /* >= 0; SGD/Adam: added to the gradient (L2); AdamW: decoupled */
    double momentum;             /* SGD, in [0, 1); dampening is 0 */
    int nesterov;                /* SGD: Nesterov momentum (needs momentum > 0) */
    double beta1, beta2, eps;    /* Adam(W): PyTorch's defaults are 0.9, 0.999, 1e-8 */
} optim_opts;

/* One parameter tensor: data updated in place from grad (n floats each). */
typedef struct {
    float *data;
    float *grad;     /* read by optim_step, scaled by optim_clip_grad_norm */
    size_t n;
    int group;       /* OPTIM_GROUP_* */
    int no_decay;    /* 1: no weight decay on this tensor (e.g. BatchNorm gamma/beta, biases) */
} optim_param;

typedef struct optim optim;

/* Copies the parameter list and allocates the state buffers (zeros, step 0). CNN_ERR_ARG with a
 * message for bad options (negative rates, momentum outside [0,1), Nesterov without momentum, betas
 * outside [0,1), eps <= 0, an unknown group), CNN_ERR_NOMEM. */
cnn_status optim_init(optim **out, const optim_opts *o, const optim_param *params, int n_params, char *err,
                      size_t err_bytes);
void optim_free(optim *o);

/* One update of every parameter from its gradient with each group's learning rate times lr_factor
 * (the schedule's value for this step). */
void optim_step(optim *o, double lr_factor);

/* Steps taken so far (Adam's bias-correction count). */
int64_t optim_steps(const optim *o);

/* torch.nn.utils.clip_grad_norm_(params, max_norm) over every parameter's gradient: the global L2
 * norm (each tensor's norm, then the norm of those, summed in double in parameter order); when
 * max_norm / (norm + 1e-6) < 1 every gradient is multiplied by it. Returns the norm before
 * clipping. */
double optim_clip_grad_norm(optim *o, double max_norm);

/* State stream for checkpoints: a tagged header (kind, parameter count and sizes, step count) and
 * the buffers, little-endian float32. optim_state_read checks it against this optimizer (same kind
 * and parameter sizes) and fails with CNN_ERR_FORMAT naming the mismatch, CNN_ERR_IO on a short or
 * failed read/write; on failure the state is unchanged. */
cnn_status optim_state_write(const optim *o, FILE *f, char *err, size_t err_bytes);
cnn_status optim_state_read(optim *o, FILE *f, char *err, size_t err_bytes);

/* Learning-rate schedules, as a factor on the base rates, a pure function of the 0-based step. */
typedef enum { OPTIM_SCHED_CONST = 0, OPTIM_SCHED_COSINE, OPTIM_SCHED_STEP } optim_sched_kind;

typedef struct {
    optim_sched_kind kind;
    int64_t total_steps;   /* steps of the whole run (cosine reaches 0 after the last) */
    int64_t warmup_steps;  /* linear warm-up: step s < warmup_steps uses (s + 1) / warmup_steps */
    int64_t step_size;     /* STEP: multiply by gamma every step_size steps after the warm-up (>= 1) */
    double gamma;
} optim_schedule;

/* Warm-up steps s < W: (s + 1) / W (torch LinearLR(start_factor=1/W, total_iters=W-1)); after it,
 * with t = s - W and T = total_steps - W: CONST 1; COSINE (1 + cos(pi * t / T)) / 2
 * (CosineAnnealingLR(T_max=T, eta_min=0)'s closed form); STEP gamma^floor(t / step_size)
 * (StepLR). */
double optim_schedule_factor(const optim_schedule *s, int64_t step);

#endif
