/* EXIF Orientation from a TIFF-structured EXIF block. Only IFD0 is read (that is where Orientation
 * lives and where PIL's getexif() looks), so no IFD chain is followed and loops cannot occur; every
 * read is bounds-checked against the block and the entry count is capped. */
#include "image_internal.h"

#include <string.h>

#define EXIF_TAG_ORIENTATION 0x0112
#define EXIF_MAX_ENTRIES 1024 /* far above any real IFD0; bounds the scan of a hostile count */

enum { TIFF_TYPE_BYTE = 1, TIFF_TYPE_SHORT = 3, TIFF_TYPE_LONG = 4 };

typedef struct {
    const uint8_t *p;
    size_t n_bytes;
    int big_endian;
} tiff_reader;

/* Callers check bounds first. */
static uint32_t tiff_u16(const tiff_reader *t, size_t off)
{
    const uint8_t *b = t->p + off;
    return t->big_endian ? (uint32_t)b[0] << 8 | b[1] : (uint32_t)b[1] << 8 | b[0];
}

static uint32_t tiff_u32(const tiff_reader *t, size_t off)
{
    const uint8_t *b = t->p + off;
    if (t->big_endian)
        return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

int image_exif_orientation(const uint8_t *tiff, size_t n_bytes)
{
    static const uint8_t exif_prefix[6] = {'E', 'x', 'i', 'f', 0, 0};
    if (!tiff)
        return 1;
    if (n_bytes >= sizeof exif_prefix && memcmp(tiff, exif_prefix, sizeof exif_prefix) == 0) {
        tiff += sizeof exif_prefix;
        n_bytes -= sizeof exif_prefix;
    }
    if (n_bytes < 8)
        return 1;
    tiff_reader t = {.p = tiff, .n_bytes = n_bytes};
    if (tiff[0] == 'M' && tiff[1] == 'M')
        t.big_endian = 1;
    else if (!(tiff[0] == 'I' && tiff[1] == 'I'))
        return 1;
    if (tiff_u16(&t, 2) != 42)
        return 1;

    uint32_t ifd0 = tiff_u32(&t, 4);
    if (ifd0 < 8 || (size_t)ifd0 > t.n_bytes - 2)
        return 1;
    size_t n_entries = tiff_u16(&t, ifd0);
    size_t n_fit = (t.n_bytes - ifd0 - 2) / 12; /* entries that lie inside the block */
    if (n_entries > n_fit)
        n_entries = n_fit;
    if (n_entries > EXIF_MAX_ENTRIES)
        n_entries = EXIF_MAX_ENTRIES;

    /* PIL keeps the last value when a tag repeats; do the same. */
    uint32_t orientation = 1;
    for (size_t i = 0; i < n_entries; i++) {
        size_t e = ifd0 + 2 + i * 12;
        if (tiff_u16(&t, e) != EXIF_TAG_ORIENTATION)
            continue;
        uint32_t type = tiff_u16(&t, e + 2), count = tiff_u32(&t, e + 4);
        if (count != 1) /* a multi-valued Orientation is meaningless; PIL ignores it too */
            continue;
        if (type == TIFF_TYPE_SHORT)
            orientation = tiff_u16(&t, e + 8);
        else if (type == TIFF_TYPE_LONG)
            orientation = tiff_u32(&t, e + 8);
        else if (type == TIFF_TYPE_BYTE)
            orientation = t.p[e + 8];
    }
    return orientation >= 1 && orientation <= 8 ? (int)orientation : 1;
}
