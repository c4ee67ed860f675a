/* Monotonic clock helpers for the per-stage latency figures. */
#ifndef CNN_TIMING_H
#define CNN_TIMING_H

#include <stdint.h>
#include <time.h>

static inline uint64_t timing_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline double timing_ms(uint64_t from_ns, uint64_t to_ns)
{
    return to_ns > from_ns ? (double)(to_ns - from_ns) / 1e6 : 0.0;
}

#endif
