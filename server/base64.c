#include "base64.h"

size_t base64_decoded_max(size_t n_in) { return n_in / 4 * 3; }

/* 0..63 for an alphabet character, -1 otherwise. */
static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

cnn_status base64_decode(const char *in, size_t n_in, uint8_t *out, size_t out_bytes, size_t *n_out, char *err,
                         size_t err_bytes)
{
    *n_out = 0;
    if (n_in % 4)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "base64: length %zu is not a multiple of 4", n_in);
    if (out_bytes < base64_decoded_max(n_in))
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "base64: output buffer too small");
    size_t n = 0;
    for (size_t i = 0; i < n_in; i += 4) {
        int last = i + 4 == n_in;
        int n_pad = last ? (in[i + 3] == '=') + (in[i + 3] == '=' && in[i + 2] == '=') : 0;
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            int s = k >= 4 - n_pad ? 0 : sextet((unsigned char)in[i + k]);
            if (s < 0)
                return cnn_err(err, err_bytes, CNN_ERR_ARG, "base64: invalid character 0x%02x at offset %zu",
                               (unsigned char)in[i + k], i + k);
            v = v << 6 | (uint32_t)s;
        }
        if ((n_pad == 1 && (v & 0xff)) || (n_pad == 2 && (v & 0xffff)))
            return cnn_err(err, err_bytes, CNN_ERR_ARG, "base64: non-zero bits after the last byte at offset %zu", i);
        out[n++] = (uint8_t)(v >> 16);
        if (n_pad < 2) out[n++] = (uint8_t)(v >> 8);
        if (n_pad < 1) out[n++] = (uint8_t)v;
    }
    *n_out = n;
    return CNN_OK;
}
