/* server/augment: RandomResizedCrop geometry (every box inside the image, area fraction and aspect
 * ratio within torchvision's ranges up to rounding, their distribution, the centre-crop fallback for
 * extreme shapes), the flip coin, determinism per (seed, epoch, image), and image_resized_crop on
 * synthetic images (identity box, flip, a constant image, refused boxes).
 * (tests/train/test_augment_pil.py compares the resampled pixels with torchvision on PIL.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/augment.h"
#include "../test.h"

static void test_geometry(void)
{
    test_begin();
    const int sizes[][2] = {{500, 375}, {100, 100}, {224, 224}, {37, 53}, {4032, 3024}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int W = sizes[s][0], H = sizes[s][1];
        const int n = 4000;
        double sum_scale = 0, min_scale = 2, max_scale = 0, sum_log_ratio = 0;
        int n_flip = 0, n_fallback = 0, n_bad = 0, left_edge = 0, right_edge = 0;
        for (int i = 0; i < n; i++) {
            augment_params p;
            augment_sample(W, H, 7, (uint64_t)(i % 5), (uint64_t)i, &p);
            const image_box *b = &p.box;
            if (b->w < 1 || b->h < 1 || b->x < 0 || b->y < 0 || b->x + b->w > W || b->y + b->h > H) n_bad++;
            n_flip += p.flip;
            n_fallback += p.fallback;
            if (p.fallback) continue;
            const double scale = (double)b->w * b->h / ((double)W * H), ratio = (double)b->w / b->h;
            /* rounding of w and h moves area and ratio by at most about 1/min(w,h) each way */
            const double slack = 2.5 / (b->w < b->h ? b->w : b->h);
            if (scale < 0.08 * (1 - slack) - 1e-9 || scale > 1 + 1e-9 || ratio < 0.75 * (1 - slack) ||
                ratio > 4.0 / 3 * (1 + slack))
                n_bad++;
            sum_scale += scale;
            sum_log_ratio += log(ratio);
            if (scale < min_scale) min_scale = scale;
            if (scale > max_scale) max_scale = scale;
            left_edge += b->x == 0;
            right_edge += b->x + b->w == W;
        }
        T_CHECK(!n_bad, "%dx%d: %d boxes outside the image or the ranges", W, H, n_bad);
        T_CHECK(n_flip > n * 0.45 && n_flip < n * 0.55, "%dx%d: %d flips of %d", W, H, n_flip, n);
        const int n_fit = n - n_fallback;
        /* Accepted area fractions: uniform on [0.08, 1] restricted to boxes that fit, so the mean is
         * below 0.54 and the smallest near 0.08. */
        T_CHECK(n_fit > n * 0.9 && min_scale < 0.1 && max_scale > 0.6 && sum_scale / n_fit > 0.3 &&
                    sum_scale / n_fit < 0.56,
                "%dx%d: %d fitted, scale min %.3f max %.3f mean %.3f", W, H, n_fit, min_scale, max_scale,
                sum_scale / n_fit);
        T_CHECK(fabs(sum_log_ratio / n_fit) < 0.05, "%dx%d: mean log ratio %.3f", W, H, sum_log_ratio / n_fit);
        T_CHECK(left_edge > 0 && right_edge > 0, "%dx%d: boxes never touch an edge (%d, %d)", W, H, left_edge,
                right_edge);
    }
    test_end("augment: RandomResizedCrop boxes inside the image, scale/ratio ranges and distribution, flip 50%");
}

static void test_fallback(void)
{
    test_begin();
    /* 1000x10: every attempt is taller than 10 pixels -> centre crop of height 10, width round(10*4/3). */
    augment_params p;
    for (int i = 0; i < 50; i++) {
        augment_sample(1000, 10, 1, 0, (uint64_t)i, &p);
        T_CHECK(p.fallback && p.box.w == 13 && p.box.h == 10 && p.box.x == (1000 - 13) / 2 && p.box.y == 0,
                "wide: fallback %d box %dx%d at (%d,%d)", p.fallback, p.box.w, p.box.h, p.box.x, p.box.y);
        augment_sample(9, 700, 1, 0, (uint64_t)i, &p);
        T_CHECK(p.fallback && p.box.w == 9 && p.box.h == 12 && p.box.x == 0 && p.box.y == (700 - 12) / 2,
                "tall: fallback %d box %dx%d at (%d,%d)", p.fallback, p.box.w, p.box.h, p.box.x, p.box.y);
        augment_sample(1, 1, 1, 0, (uint64_t)i, &p); /* any attempt rounds to 0 or 1 pixel: whole image */
        T_CHECK(p.box.w == 1 && p.box.h == 1 && p.box.x == 0 && p.box.y == 0, "1x1: %dx%d", p.box.w, p.box.h);
    }
    test_end("augment: centre-crop fallback for extreme aspect ratios (torchvision's rule)");
}

static void test_determinism(void)
{
    test_begin();
    augment_params a, b;
    augment_sample(640, 480, 3, 2, 17, &a);
    augment_sample(640, 480, 3, 2, 17, &b);
    T_CHECK(!memcmp(&a, &b, sizeof a), "same (seed, epoch, image) gave different crops");
    int same_epoch = 0, same_item = 0, same_seed = 0;
    for (int i = 0; i < 100; i++) {
        augment_sample(640, 480, 3, 2, (uint64_t)i, &a);
        augment_sample(640, 480, 3, 3, (uint64_t)i, &b);
        same_epoch += !memcmp(&a.box, &b.box, sizeof a.box);
        augment_sample(640, 480, 3, 2, (uint64_t)i + 1, &b);
        same_item += !memcmp(&a.box, &b.box, sizeof a.box);
        augment_sample(640, 480, 4, 2, (uint64_t)i, &b);
        same_seed += !memcmp(&a.box, &b.box, sizeof a.box);
    }
    T_CHECK(same_epoch < 3 && same_item < 3 && same_seed < 3, "repeated boxes: epoch %d item %d seed %d", same_epoch,
            same_item, same_seed);
    test_end("augment: crops are a function of (seed, epoch, image) and differ across each");
}

static void test_resized_crop(void)
{
    test_begin();
    enum { W = 6, H = 4 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (uint8_t)(i * 7 % 256);
    image img = {.rgb = px, .width = W, .height = H};
    const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    float out[3 * 16], flipped[3 * 16];
    char err[256];
    /* A 4x4 box at (1, 0) resized to 4x4 is a copy of those pixels. */
    image_box box = {1, 0, 4, 4};
    T_CHECK(image_resized_crop(&img, &box, 4, 0, mean, std, out, err, sizeof err) == CNN_OK, "%s", err);
    int exact = 1;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++)
                exact &= out[c * 16 + y * 4 + x] == (float)px[(y * W + x + 1) * 3 + c] / 255.0f;
    T_CHECK(exact, "identity box is not a copy");
    T_CHECK(image_resized_crop(&img, &box, 4, 1, mean, std, flipped, err, sizeof err) == CNN_OK, "%s", err);
    int mirrored = 1;
    for (int r = 0; r < 12; r++)
        for (int x = 0; x < 4; x++) mirrored &= flipped[r * 4 + x] == out[r * 4 + 3 - x];
    T_CHECK(mirrored, "flip is not the mirror image");
    /* A constant image stays constant at any scale; normalization applied. */
    memset(px, 200, sizeof px);
    const float m2[3] = {0.5f, 0.5f, 0.5f}, s2[3] = {0.5f, 0.5f, 0.5f};
    image_box small = {2, 1, 3, 2};
    float big[3 * 49];
    T_CHECK(image_resized_crop(&img, &small, 7, 0, m2, s2, big, err, sizeof err) == CNN_OK, "%s", err);
    const float want = (200.0f / 255.0f - 0.5f) / 0.5f;
    int constant = 1;
    for (int i = 0; i < 3 * 49; i++) constant &= big[i] == want;
    T_CHECK(constant, "upscaled constant box: %g, want %g", big[0], want);
    const image_box bad[] = {{-1, 0, 2, 2}, {5, 0, 2, 2}, {0, 3, 2, 2}, {0, 0, 0, 2}, {0, 0, 7, 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        T_CHECK(image_resized_crop(&img, &bad[i], 4, 0, mean, std, out, err, sizeof err) == CNN_ERR_ARG &&
                    strstr(err, "outside"),
                "box %zu accepted", i);
    test_end("image_resized_crop: identity box copies, flip mirrors, constant stays constant, bad boxes refused");
}

int main(void)
{
    test_geometry();
    test_fallback();
    test_determinism();
    test_resized_crop();
    return test_finish();
}
