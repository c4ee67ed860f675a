/* image_dump: runs image_decode (+ image_preprocess) on files and dumps the results for the
 * Python tests (fidelity against PIL/torchvision, corpus outcomes).
 *
 *   image_dump [options] IN OUT_PREFIX [IN OUT_PREFIX ...]
 *     --max-pixels N     decode pixel cap (default: the library default)
 *     --min-short N      JPEG DCT scaling target short side (default 0: full-size decode)
 *     --resize R --crop C  also run image_preprocess, writing OUT_PREFIX.f32 (3*C*C float32, NCHW)
 *     --mean a,b,c --std a,b,c  normalization (default: ImageNet)
 *     --rgb              also write the decoded pixels to OUT_PREFIX.rgb (height*width*3 bytes,
 *                        from a whole decode)
 *     --whole            preprocess a whole decode (default: the region decode the server uses,
 *                        image_decode_opts.pps = the preprocessing; always whole with --box)
 *     --box x,y,w,h --size S [--flip]  also run image_resized_crop (the training augmentation's
 *                        resampling, with the --mean/--std), writing OUT_PREFIX.box.f32 (3*S*S float32)
 *
 * One line per input on stdout:
 *   IN status=ok format=jpeg src=WxH size=WxH scale=N/D orientation=O
 *   IN status=<cnn_status_str> error=<message>
 * Image errors are results, not failures: the exit status is 0 unless the tool itself failed
 * (bad usage, unreadable input, unwritable output: 3). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/image.h"

#define EXIT_TOOL_FAILURE 3

typedef struct {
    image_decode_opts dec;
    image_preproc pp;
    int want_tensor, want_rgb, whole;
    image_box box;
    int box_size, flip;
} dump_opts;

static int read_file(const char *path, uint8_t **data, size_t *n_bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t new_cap = cap ? cap * 2 : 1 << 16;
            uint8_t *p = realloc(buf, new_cap);
            if (!p) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = p;
            cap = new_cap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -1;
    }
    *data = buf;
    *n_bytes = n;
    return 0;
}

static int write_file(const char *prefix, const char *ext, const void *data, size_t n_bytes)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s%s", prefix, ext) >= (int)sizeof path)
        return -1;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t put = fwrite(data, 1, n_bytes, f);
    int bad = fclose(f) != 0 || put != n_bytes;
    return bad ? -1 : 0;
}

static int parse_floats3(const char *s, float v[3])
{
    char tail;
    return sscanf(s, "%f,%f,%f%c", &v[0], &v[1], &v[2], &tail) == 3 ? 0 : -1;
}

/* Returns 0, or EXIT_TOOL_FAILURE when the tool itself failed. */
static int dump_one(const dump_opts *o, const char *in, const char *out_prefix)
{
    uint8_t *data = NULL;
    size_t n_bytes = 0;
    if (read_file(in, &data, &n_bytes) != 0) {
        fprintf(stderr, "image_dump: cannot read %s: %s\n", in, strerror(errno));
        return EXIT_TOOL_FAILURE;
    }
    char err[256] = "";
    image img;
    int rc = 0;
    float *tensor = NULL, *boxed = NULL;
    image_decode_opts dec = o->dec;
    if (o->want_tensor && !o->whole && o->box_size <= 0) { /* what the server decodes */
        dec.pps = &o->pp;
        dec.n_pps = 1;
    }
    cnn_status st = image_decode(data, n_bytes, &dec, &img, err, sizeof err);
    if (st == CNN_OK && o->want_tensor) {
        tensor = malloc(sizeof *tensor * 3 * (size_t)o->pp.crop * (size_t)o->pp.crop);
        if (!tensor) {
            fprintf(stderr, "image_dump: out of memory\n");
            rc = EXIT_TOOL_FAILURE;
            goto done_img;
        }
        st = image_preprocess(&img, &o->pp, tensor, err, sizeof err);
    }
    if (st == CNN_OK && o->box_size > 0) {
        boxed = malloc(sizeof *boxed * 3 * (size_t)o->box_size * (size_t)o->box_size);
        if (!boxed) {
            fprintf(stderr, "image_dump: out of memory\n");
            rc = EXIT_TOOL_FAILURE;
            goto done_img;
        }
        st = image_resized_crop(&img, &o->box, o->box_size, o->flip, o->pp.mean, o->pp.std, boxed, err, sizeof err);
        if (st != CNN_OK) image_free(&img);
    }
    if (st != CNN_OK) {
        printf("%s status=%s error=%s\n", in, cnn_status_str(st), err);
        goto done_img;
    }
    printf("%s status=ok format=%s src=%dx%d size=%dx%d scale=%d/%d orientation=%d\n", in,
           image_format_name(img.format), img.src_width, img.src_height, img.width, img.height,
           img.scale_num, img.scale_denom, img.orientation);
    image whole = img;
    if (o->want_rgb && dec.n_pps > 0) {
        st = image_decode(data, n_bytes, &o->dec, &whole, err, sizeof err);
        if (st != CNN_OK) { /* decoded once already: cannot fail differently */
            fprintf(stderr, "image_dump: %s: whole decode failed: %s\n", in, err);
            st = CNN_OK;
            rc = EXIT_TOOL_FAILURE;
            goto done_img;
        }
    }
    int bad_write = o->want_rgb &&
        write_file(out_prefix, ".rgb", whole.rgb, (size_t)whole.width * whole.height * 3) != 0;
    if (whole.rgb != img.rgb)
        image_free(&whole);
    if (bad_write ||
        (o->want_tensor && write_file(out_prefix, ".f32", tensor,
                                      sizeof *tensor * 3 * (size_t)o->pp.crop * o->pp.crop) != 0) ||
        (boxed && write_file(out_prefix, ".box.f32", boxed,
                             sizeof *boxed * 3 * (size_t)o->box_size * o->box_size) != 0)) {
        fprintf(stderr, "image_dump: cannot write %s.*\n", out_prefix);
        rc = EXIT_TOOL_FAILURE;
    }
done_img:
    if (st == CNN_OK)
        image_free(&img);
    free(tensor);
    free(boxed);
    free(data);
    fflush(stdout);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: image_dump [--max-pixels N] [--min-short N] [--resize R --crop C] "
                    "[--mean a,b,c --std a,b,c] [--rgb] [--whole] "
                    "[--box x,y,w,h --size S [--flip]] IN OUT_PREFIX [IN OUT_PREFIX ...]\n");
}

int main(int argc, char **argv)
{
    dump_opts o = {
        .pp = {.mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}},
    };
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--rgb") == 0 || strcmp(opt, "--flip") == 0 || strcmp(opt, "--whole") == 0) {
            *(strcmp(opt, "--rgb") == 0 ? &o.want_rgb : strcmp(opt, "--flip") == 0 ? &o.flip : &o.whole) = 1;
            continue;
        }
        if (i + 1 >= argc) {
            usage();
            return EXIT_TOOL_FAILURE;
        }
        const char *val = argv[++i];
        int bad = 0;
        if (strcmp(opt, "--max-pixels") == 0)
            o.dec.max_pixels = strtoll(val, NULL, 10);
        else if (strcmp(opt, "--min-short") == 0)
            o.dec.min_short_side = atoi(val);
        else if (strcmp(opt, "--resize") == 0)
            o.pp.resize = atoi(val);
        else if (strcmp(opt, "--crop") == 0)
            o.pp.crop = atoi(val);
        else if (strcmp(opt, "--mean") == 0)
            bad = parse_floats3(val, o.pp.mean);
        else if (strcmp(opt, "--std") == 0)
            bad = parse_floats3(val, o.pp.std);
        else if (strcmp(opt, "--size") == 0)
            o.box_size = atoi(val);
        else if (strcmp(opt, "--box") == 0) {
            char tail;
            bad = sscanf(val, "%d,%d,%d,%d%c", &o.box.x, &o.box.y, &o.box.w, &o.box.h, &tail) != 4;
        }
        else
            bad = 1;
        if (bad) {
            usage();
            return EXIT_TOOL_FAILURE;
        }
    }
    o.want_tensor = o.pp.resize > 0 || o.pp.crop > 0;
    if (o.want_tensor && (o.pp.resize <= 0 || o.pp.crop <= 0)) {
        fprintf(stderr, "image_dump: --resize and --crop go together\n");
        return EXIT_TOOL_FAILURE;
    }
    if (i >= argc || (argc - i) % 2 != 0) {
        usage();
        return EXIT_TOOL_FAILURE;
    }
    for (; i < argc; i += 2) {
        int rc = dump_one(&o, argv[i], argv[i + 1]);
        if (rc != 0)
            return rc;
    }
    return 0;
}
