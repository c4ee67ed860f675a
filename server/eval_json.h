/* The JSON form of eval_metrics (the "metrics" part of `cnnserve eval`'s report; schema in the
 * README). Undefined values (an AUC without positives, a mean cross-entropy not computed) are null;
 * the first ROC threshold (+inf) is null too. */
#ifndef CNN_EVAL_JSON_H
#define CNN_EVAL_JSON_H

#include <jansson.h>

#include "eval_metrics.h"

/* labels: K class names, or NULL to leave them out. NULL when out of memory. */
json_t *eval_metrics_json(const eval_metrics *m, const char *const *labels);

/* A double as a JSON real, null when it is not finite. */
json_t *eval_real_json(double v);

#endif
