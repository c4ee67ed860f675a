/* cnnserve page: pick a photo, POST it as the raw body to /v1/classify, draw the answer.
 * Vanilla JS, no dependencies; every server string goes into the DOM as text (never as HTML). */
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const ACCEPTED_TYPES = ['image/jpeg', 'image/png', 'image/webp'];
  const STAGES = ['queue', 'decode', 'preprocess', 'inference', 'postprocess'];
  const ORIENTATION = {
    1: 'normal', 2: 'mirrored', 3: 'rotated 180°', 4: 'flipped vertically', 5: 'mirrored and rotated 90° counter-clockwise',
    6: 'rotated 90° clockwise', 7: 'mirrored and rotated 90° clockwise', 8: 'rotated 90° counter-clockwise',
  };

  const state = { file: null, url: null, byName: {}, busy: false, exif: null };

  /* ------------------------------------------------------------ small helpers */

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'style') Object.assign(e.style, v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function fmtCount(n) {
    if (typeof n !== 'number') return '?';
    if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 1 : 2) + ' G';
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 1 : 2) + ' M';
    if (n >= 1e3) return (n / 1e3).toFixed(1) + ' k';
    return String(n);
  }

  function fmtBytes(n) {
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MiB';
    if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + ' KiB';
    return n + ' bytes';
  }

  function fmtMs(ms) {
    if (typeof ms !== 'number' || !isFinite(ms)) return '?';
    return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
  }

  function fmtScore(p) {
    if (p >= 0.999) return (p * 100).toFixed(2) + '%';
    if (p < 0.001) return '<0.1%';
    return (p * 100).toFixed(1) + '%';
  }

  /* Classes a model answers with: the server's label count (`classes`), else ImageNet's 1000 for a
   * 1001-output graph (background dropped), else the graph's outputs. */
  function numLabels(m) {
    if (typeof m.classes === 'number') return m.classes;
    if (m.num_classes === 1001) return 1000;
    return m.num_classes;
  }

  /* What the model was trained for: fine-tuned models name their base (and validation accuracy). */
  function modelKind(m) {
    if (m.fine_tuned) {
      let s = 'fine-tuned';
      if (m.base) s += ' from ' + String(m.base).replace(/\.safetensors$/, '');
      const acc = Number(m.val_accuracy);
      if (m.val_accuracy !== null && m.val_accuracy !== undefined && isFinite(acc))
        s += `, val. accuracy ${(acc * 100).toFixed(1)}%`;
      return s;
    }
    return numLabels(m) === 1000 ? 'ImageNet' : '';
  }

  function modelFacts(m) {
    const parts = [];
    if (typeof m.params === 'number') parts.push(fmtCount(m.params) + ' params');
    if (typeof m.macs === 'number') parts.push(fmtCount(m.macs) + ' MACs');
    if (m.input_size) parts.push((m.resize_size ? m.resize_size + '→' : '') + m.input_size + ' px');
    const k = numLabels(m);
    if (typeof k === 'number') parts.push(k + ' classes');
    return parts.join(' · ');
  }

  /* ------------------------------------------------------------ status and errors */

  function setStatus(text, busy) {
    const s = $('status');
    s.textContent = text;
    s.classList.toggle('busy', !!busy);
  }

  function clearError() {
    const e = $('error');
    e.hidden = true;
    e.replaceChildren();
  }

  /* A readable message for an error answer: {title, detail}. status: HTTP status (0 = no answer);
   * body: the parsed JSON (or null); retryAfter: the Retry-After header; fileBytes: the upload size. */
  function describeError(status, body, retryAfter, fileBytes) {
    const err = (body && body.error) || {};
    const msg = err.message || '';
    const code = err.code || '';
    const size = typeof fileBytes === 'number' ? fmtBytes(fileBytes) : 'This file';
    switch (status) {
    case 0:
      return { title: 'Could not reach the server.', detail: 'Check that cnnserve is still running, then try again.' };
    case 413: {
      const limit = typeof err.max_body_bytes === 'number' ? fmtBytes(err.max_body_bytes) : 'its limit';
      return { title: `The photo is too large to upload (${size}; the server accepts up to ${limit}).`,
               detail: 'Use a smaller or more compressed photo, or start the server with a larger --max-body-bytes.' };
    }
    case 415:
      return { title: 'This file is not an image the server can read.',
               detail: 'Send a JPEG, PNG or WebP photo' + (msg ? ` (server: ${msg})` : '') + '.' };
    case 422:
      if (code === 'image_too_large')
        return { title: 'The image has too many pixels for this server.', detail: msg };
      return { title: 'The image could not be decoded — the file looks damaged or incomplete.', detail: msg };
    case 503: {
      const s = parseInt(retryAfter, 10);
      const wait = isFinite(s) && s >= 0 ? `Try again in ${s} second${s === 1 ? '' : 's'}.` : 'Try again shortly.';
      const why = code === 'draining' ? 'The server is shutting down.' : 'The server is busy right now.';
      return { title: `${why} ${wait}`, detail: msg, retryAfter: isFinite(s) ? s : null };
    }
    default:
      if (msg) return { title: `The server answered ${status}: ${msg}`, detail: '' };
      return { title: `The server answered with status ${status}.`, detail: '' };
    }
  }

  function showError(d, requestId) {
    const e = $('error');
    e.replaceChildren(el('strong', { text: d.title }));
    if (d.detail) e.append(el('p', { class: 'detail', text: d.detail }));
    if (requestId) e.append(el('p', { class: 'detail', text: 'Request id: ' + requestId }));
    if (d.retryAfter !== undefined && state.file) {
      const b = el('button', { class: 'btn', type: 'button', text: 'Retry' });
      b.addEventListener('click', () => classify());
      e.append(b);
    }
    e.hidden = false;
  }

  /* ------------------------------------------------------------ models */

  function selectedModel() {
    const r = document.querySelector('input[name="model"]:checked');
    return r ? r.value : 'all';
  }

  function modelOption(value, title, facts, checked, tag) {
    const input = el('input', { type: 'radio', name: 'model', value, checked });
    const name = el('span', { class: 'name', text: title });
    if (tag) name.append(el('span', { class: 'tag', text: tag }));
    return el('label', { class: 'model' }, input, name, el('span', { class: 'facts', text: facts }));
  }

  function renderModels(data) {
    const box = $('models');
    const legend = box.querySelector('legend');
    box.replaceChildren(legend);
    const models = data.models || [];
    state.byName = {};
    for (const m of models) state.byName[m.name] = m;
    /* ready, or loaded and still warming up; missing and failed ones are listed with the reason. */
    const usable = models.filter((m) => m.state === 'ready' || m.state === 'loaded');
    const missing = models.filter((m) => !usable.includes(m));
    if (!usable.length) {
      box.append(el('p', { class: 'hint', text: 'No model is loaded: start the server with --weights-dir pointing at *.safetensors files.' }));
      return;
    }
    const compare = usable.length > 1;
    if (compare)
      box.append(modelOption('all', 'All models', `compare ${usable.length} models side by side`, true, 'compare'));
    for (const m of usable) {
      const kind = m.fine_tuned ? 'fine-tuned' : numLabels(m) === 1000 ? 'ImageNet' : null;
      const warming = m.state === 'loaded' ? 'warming up' : null;
      const facts = [m.fine_tuned ? modelKind(m) : null, modelFacts(m)].filter(Boolean).join(' · ');
      box.append(modelOption(m.name, m.name, facts, !compare && m.name === data.default_model,
                             [kind, warming, m.name === data.default_model ? 'default' : null].filter(Boolean).join(', ')));
    }
    if (!document.querySelector('input[name="model"]:checked')) box.querySelector('input[name="model"]').checked = true;
    if (missing.length) {
      const d = el('details', { class: 'missing' },
                   el('summary', { class: 'hint', text: `${missing.length} known model${missing.length > 1 ? 's' : ''} not loaded` }));
      const ul = el('ul', { class: 'hint' });
      for (const m of missing) ul.append(el('li', { text: `${m.name} (${m.state}): ${m.why || 'not loaded'}` }));
      d.append(ul);
      box.append(d);
    }
    const meta = [`${usable.length} model${usable.length > 1 ? 's' : ''} loaded`];
    if (data.workers) meta.push(`${data.workers} worker${data.workers > 1 ? 's' : ''}` +
                                (data.threads_per_worker > 1 ? ` × ${data.threads_per_worker} threads` : ''));
    $('server-meta').textContent = meta.join(' · ');
    if (data.version) $('version').textContent = 'cnnserve ' + data.version;
    updateButton();
  }

  async function loadModels() {
    try {
      const r = await fetch('/v1/models', { headers: { Accept: 'application/json' } });
      if (!r.ok) throw new Error('status ' + r.status);
      renderModels(await r.json());
    } catch (e) {
      $('server-meta').textContent = 'Could not load the model list (' + e.message + ').';
      $('models').replaceChildren(el('p', { class: 'hint', text: 'Reload the page to try again.' }));
    }
  }

  /* ------------------------------------------------------------ photo */

  /* EXIF orientation (1..8) of a JPEG, or null: reads the first APP1 Exif segment's IFD0. */
  async function exifOrientation(file) {
    const buf = await file.slice(0, 256 * 1024).arrayBuffer();
    const v = new DataView(buf);
    if (v.byteLength < 4 || v.getUint16(0) !== 0xffd8) return null;
    let p = 2;
    while (p + 4 <= v.byteLength) {
      const marker = v.getUint16(p);
      if ((marker & 0xff00) !== 0xff00 || marker === 0xffda) return null;
      const len = v.getUint16(p + 2);
      if (marker === 0xffe1 && p + 4 + len - 2 <= v.byteLength && len >= 16 &&
          v.getUint32(p + 4) === 0x45786966 /* "Exif" */) {
        const t = p + 10;
        const little = v.getUint16(t) === 0x4949;
        const ifd = t + v.getUint32(t + 4, little);
        if (ifd + 2 > v.byteLength) return null;
        const n = v.getUint16(ifd, little);
        for (let i = 0; i < n; i++) {
          const e = ifd + 2 + i * 12;
          if (e + 12 > v.byteLength) return null;
          if (v.getUint16(e, little) === 0x0112) {
            const o = v.getUint16(e + 8, little);
            return o >= 1 && o <= 8 ? o : null;
          }
        }
        return null;
      }
      p += 2 + len;
    }
    return null;
  }

  function showPreview(file) {
    if (state.url) URL.revokeObjectURL(state.url);
    state.url = URL.createObjectURL(file);
    const img = $('preview-img');
    const info = $('preview-info');
    const kind = file.type ? file.type.replace('image/', '').toUpperCase() : 'unknown type';
    const base = `${file.name || 'pasted image'} · ${fmtBytes(file.size)} · ${kind}`;
    info.textContent = base;
    img.onload = () => {
      const o = state.exif;
      const orient = o && o !== 1 ? ` · EXIF orientation ${o} (${ORIENTATION[o]}), shown upright` : '';
      info.textContent = `${base} · ${img.naturalWidth} × ${img.naturalHeight} px${orient}`;
      img.hidden = false;
    };
    img.onerror = () => {
      info.textContent = `${base} · the browser cannot show this file`;
      img.hidden = true;
    };
    img.src = state.url;
    $('preview').hidden = false;
  }

  async function setFile(file) {
    if (!file) return;
    state.file = file;
    state.exif = null;
    clearError();
    try { state.exif = await exifOrientation(file); } catch (e) { state.exif = null; }
    showPreview(file);
    updateButton();
    classify();
  }

  /* ------------------------------------------------------------ results */

  function predictionList(preds) {
    const ol = el('ol', { class: 'preds' });
    preds.forEach((p, i) => {
      const w = Math.max(0, Math.min(100, p.score * 100));
      ol.append(el('li', { class: 'pred' + (i === 0 ? ' first' : ''), 'data-label': p.label },
                   el('span', { class: 'label', text: p.label }),
                   el('span', { class: 'score', text: fmtScore(p.score) }),
                   el('span', { class: 'bar', 'aria-hidden': 'true' }, el('i', { style: { width: w.toFixed(2) + '%' } }))));
    });
    return ol;
  }

  /* A stacked bar of one model's stages on a common scale (scaleMs = the widest bar's total). */
  function timingBar(t, scaleMs) {
    const total = STAGES.reduce((s, k) => s + (t[k] || 0), 0);
    const stack = el('div', { class: 'stack', role: 'img',
                              'aria-label': 'time per stage: ' + STAGES.map((k) => `${k} ${fmtMs(t[k] || 0)} ms`).join(', ') });
    for (const k of STAGES) {
      const w = scaleMs > 0 ? ((t[k] || 0) / scaleMs) * 100 : 0;
      stack.append(el('i', { class: k, 'data-stage': k, title: `${k}: ${fmtMs(t[k] || 0)} ms`, style: { width: w.toFixed(3) + '%' } }));
    }
    return el('div', { class: 'timing' },
              el('div', { class: 'total', text: `${fmtMs(total)} ms on the server` }),
              stack,
              el('p', { class: 'parts', text: STAGES.map((k) => `${k} ${fmtMs(t[k] || 0)}`).join(' · ') + ' ms' }));
  }

  function renderResults(a, roundTripMs) {
    const box = $('results');
    box.replaceChildren();
    const tm = a.timings_ms || {};
    /* model=all decodes and queues once for every model; a single model has its own full split. */
    const rows = a.results
      ? a.results.map((r) => ({ model: r.model, predictions: r.predictions,
                                t: { queue: tm.queue, decode: tm.decode, preprocess: r.timings_ms.preprocess,
                                     inference: r.timings_ms.inference, postprocess: r.timings_ms.postprocess } }))
      : [{ model: a.model, predictions: a.predictions, t: tm }];
    const scale = Math.max(...rows.map((r) => STAGES.reduce((s, k) => s + (r.t[k] || 0), 0)));
    box.classList.toggle('many', rows.length > 1);
    for (const r of rows) {
      const m = state.byName[r.model] || {};
      const card = el('article', { class: 'card result', 'data-model': r.model },
                      el('h3', { text: r.model }),
                      el('p', { class: 'sub', text: [modelKind(m), modelFacts(m)].filter(Boolean).join(' · ') }),
                      predictionList(r.predictions || []),
                      timingBar(r.t, scale));
      box.append(card);
    }
    const img = a.image || {};
    const bits = [];
    if (rows.length > 1) {
      /* Models with different label sets (fine-tuned ones) may name the same thing differently. */
      const groups = new Map();
      for (const r of rows) {
        const l = (r.predictions[0] || {}).label;
        groups.set(l, (groups.get(l) || []).concat(r.model));
      }
      if (groups.size === 1) bits.push(`All ${rows.length} models say “${[...groups.keys()][0]}”.`);
      else bits.push('Top labels: ' + [...groups].map(([l, ms]) => `“${l}” (${ms.join(', ')})`).join('; ') + '.');
      const fastest = rows.reduce((b, r) => (r.t.inference < b.t.inference ? r : b));
      bits.push(`Fastest inference: ${fastest.model} (${fmtMs(fastest.t.inference)} ms).`);
    }
    if (img.width) {
      let s = `Server decoded a ${img.width} × ${img.height} ${String(img.format || '').toUpperCase()}`;
      if (img.decode_scale && img.decode_scale !== '1/1') s += ` at scale ${img.decode_scale}`;
      if (img.exif_orientation && img.exif_orientation !== 1)
        s += `, EXIF orientation ${img.exif_orientation} (${ORIENTATION[img.exif_orientation] || '?'}) applied: ` +
             `${img.decoded_width} × ${img.decoded_height} upright`;
      bits.push(s + '.');
    }
    bits.push(`Round trip ${fmtMs(roundTripMs)} ms, server total ${fmtMs(tm.total)} ms.`);
    setStatus(bits.join(' '), false);
    $('legend').hidden = false;
    $('legend-shared').hidden = rows.length < 2;
  }

  /* ------------------------------------------------------------ classify */

  /* On a phone the result sits below the photo and the picker: bring it into view. */
  function revealResult() {
    const sec = $('result-section');
    if (sec.getBoundingClientRect().top > window.innerHeight * 0.6)
      sec.scrollIntoView({ block: 'start', behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth' });
  }

  function updateButton() {
    $('go').disabled = !state.file || state.busy || !document.querySelector('input[name="model"]:checked');
  }

  async function classify() {
    if (!state.file || state.busy) return;
    const model = selectedModel();
    let topk = parseInt($('topk').value, 10);
    if (!isFinite(topk) || topk < 1) topk = 1;
    if (topk > 20) topk = 20;
    $('topk').value = topk;
    state.busy = true;
    updateButton();
    clearError();
    $('results').replaceChildren();
    $('legend').hidden = true;
    const what = model === 'all' ? 'all models' : model;
    setStatus(`Classifying with ${what}…`, true);
    const file = state.file;
    /* The server sniffs the bytes; an unlisted type goes as octet-stream so it still gets a say. */
    const type = ACCEPTED_TYPES.includes(file.type) ? file.type : 'application/octet-stream';
    const t0 = performance.now();
    let resp = null;
    try {
      resp = await fetch(`/v1/classify?model=${encodeURIComponent(model)}&top_k=${topk}`,
                         { method: 'POST', body: file, headers: { 'Content-Type': type, Accept: 'application/json' } });
    } catch (e) {
      resp = null;
    }
    const roundTrip = performance.now() - t0;
    let body = null;
    if (resp) {
      try { body = await resp.json(); } catch (e) { body = null; }
    }
    state.busy = false;
    updateButton();
    if (resp && resp.ok && body) {
      renderResults(body, roundTrip);
    } else {
      setStatus('No result.', false);
      const status = resp ? resp.status : 0;
      showError(describeError(status, body, resp ? resp.headers.get('Retry-After') : null, file.size),
                body && body.error ? body.error.request_id : null);
    }
    revealResult();
  }

  /* ------------------------------------------------------------ reports */

  const HOW_TO = [
    'bin/cnnserve eval --models mobilenet_v3_small,shufflenet_v2_x1_0 --weights-dir ../shared/weights \\',
    '    --data ../shared/data/imagenet-sample/labels.tsv --out reports/imagenet.json',
    'make paper        # fine-tunes, evaluates and draws: paper/REPORT.md and its figures',
    'bin/cnnserve serve --reports-dir paper ...   # then this page links them',
  ].join('\n');

  const reportHref = (path) => '/reports/' + path.split('/').map(encodeURIComponent).join('/');

  /* A link target inside a report, resolved against the report's directory: a path under
   * /reports/, an http(s) URL (links only), or null (anything else is dropped). */
  function resolveReportUrl(url, dir, allowExternal) {
    if (/^https?:\/\//i.test(url)) return allowExternal ? url : null;
    if (/^[a-z][a-z0-9+.-]*:/i.test(url) || url.startsWith('/') || url.startsWith('#')) return null;
    const parts = dir ? dir.split('/') : [];
    for (const seg of url.split('?')[0].split('/')) {
      if (seg === '..') { if (!parts.length) return null; parts.pop(); }
      else if (seg && seg !== '.') {
        try { parts.push(decodeURIComponent(seg)); } catch (e) { return null; }
      }
    }
    return parts.length ? reportHref(parts.join('/')) : null;
  }

  /* Inline Markdown: `code`, ![alt](src), [text](href), **bold**, *em*; everything else is text. */
  function mdInline(text, dir) {
    const out = [];
    const re = /`([^`]+)`|!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*/g;
    let last = 0;
    let m;
    while ((m = re.exec(text))) {
      if (m.index > last) out.push(text.slice(last, m.index));
      if (m[1] !== undefined) out.push(el('code', { text: m[1] }));
      else if (m[3] !== undefined) {
        const src = resolveReportUrl(m[3], dir, false);
        out.push(src ? el('img', { src, alt: m[2], loading: 'lazy', class: 'md-img' }) : `[${m[2]}]`);
      } else if (m[5] !== undefined) {
        const href = resolveReportUrl(m[5], dir, true);
        out.push(href ? el('a', { href, rel: 'noopener noreferrer' }, ...mdInline(m[4], dir)) : m[4]);
      } else if (m[6] !== undefined) out.push(el('strong', {}, ...mdInline(m[6], dir)));
      else out.push(el('em', {}, ...mdInline(m[7], dir)));
      last = re.lastIndex;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  const splitRow = (line) => line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());

  /* Block Markdown as eval/paper reports use it: headings, paragraphs, pipe tables, lists, fenced code. */
  function renderMarkdown(text, dir) {
    const frag = document.createDocumentFragment();
    const lines = text.split(/\r?\n/);
    const isTableSep = (l) => /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/.test(l || '');
    const isList = (l) => /^\s*([-*+]|\d+[.)])\s+/.test(l);
    const isBlock = (l, next) => /^(#{1,6}\s|```)/.test(l) || isList(l) || (/^\s*\|/.test(l) && isTableSep(next));
    let i = 0;
    while (i < lines.length) {
      const l = lines[i];
      let m;
      if (!l.trim()) { i++; continue; }
      if (l.startsWith('```')) {
        const code = [];
        for (i++; i < lines.length && !lines[i].startsWith('```'); i++) code.push(lines[i]);
        i++;
        frag.append(el('pre', { class: 'how' }, el('code', { text: code.join('\n') })));
      } else if ((m = /^(#{1,6})\s+(.*)$/.exec(l))) {
        frag.append(el('h' + Math.min(6, m[1].length + 2), {}, ...mdInline(m[2].replace(/\s#+\s*$/, ''), dir)));
        i++;
      } else if (/^\s*\|/.test(l) && isTableSep(lines[i + 1])) {
        const head = splitRow(l);
        /* "---:" right-aligns a column (numbers), ":---:" centres it. */
        const align = splitRow(lines[i + 1]).map((c) => (/:$/.test(c) ? (/^:/.test(c) ? 'center' : 'right') : null));
        const cell = (tag, c, k) => el(tag, { class: align[k] ? 'al-' + align[k] : null }, ...mdInline(c, dir));
        const table = el('table', {}, el('thead', {}, el('tr', {}, ...head.map((c, k) => cell('th', c, k)))));
        const body = el('tbody');
        for (i += 2; i < lines.length && /^\s*\|/.test(lines[i]); i++)
          body.append(el('tr', {}, ...splitRow(lines[i]).map((c, k) => cell('td', c, k))));
        table.append(body);
        frag.append(el('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'table' }, table));
      } else if (isList(l)) {
        const ordered = /^\s*\d/.test(l);
        const list = el(ordered ? 'ol' : 'ul');
        for (; i < lines.length && isList(lines[i]); i++)
          list.append(el('li', {}, ...mdInline(lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, ''), dir)));
        frag.append(list);
      } else {
        const para = [];
        for (; i < lines.length && lines[i].trim() && !(para.length && isBlock(lines[i], lines[i + 1])); i++)
          para.push(lines[i].trim());
        frag.append(el('p', {}, ...mdInline(para.join(' '), dir)));
      }
    }
    return frag;
  }

  async function showReport(path) {
    const view = $('report-view');
    const dir = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    const close = el('button', { class: 'btn', type: 'button', text: 'Close' });
    close.addEventListener('click', () => { view.hidden = true; view.replaceChildren(); });
    const title = el('h3', { tabindex: '-1', text: path });
    view.replaceChildren(el('div', { class: 'view-head' }, title,
                            el('a', { href: reportHref(path), text: 'raw' }), close));
    view.hidden = false;
    try {
      const r = await fetch(reportHref(path));
      if (!r.ok) throw new Error('status ' + r.status);
      const text = await r.text();
      view.append(/\.md$/i.test(path) ? renderMarkdown(text, dir) : el('pre', { class: 'how' }, el('code', { text })));
    } catch (e) {
      view.append(el('p', { class: 'error', text: `Could not load ${path} (${e.message}).` }));
    }
    title.focus();
  }

  function renderReports(data) {
    const box = $('reports');
    box.replaceChildren();
    box.classList.add('reports');
    const files = (data && data.files) || [];
    if (!files.length) {
      box.append(el('p', { text: data && data.configured
        ? 'The reports directory is empty. Make the reports with:'
        : 'No reports directory is configured. Make the reports and start the server with --reports-dir:' }));
      box.append(el('pre', { class: 'how' }, el('code', { text: HOW_TO })));
      return;
    }
    /* Markdown reports first, shallowest first (paper/REPORT.md before the logs under out/). */
    const rank = (f) => [/\.md$/i.test(f.path) ? 0 : 1, f.path.split('/').length];
    const texts = files.filter((f) => /\.(md|txt|csv|tsv|log)$/i.test(f.path)).sort((a, b) => {
      const ra = rank(a), rb = rank(b);
      return ra[0] - rb[0] || ra[1] - rb[1] || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
    });
    if (texts.length) {
      box.append(el('h3', { text: 'Reports and tables' }));
      const ul = el('ul');
      for (const f of texts) {
        const show = el('button', { class: 'btn small', type: 'button', text: 'Show here', 'data-path': f.path });
        show.addEventListener('click', () => showReport(f.path));
        ul.append(el('li', {}, el('a', { href: reportHref(f.path), text: f.path }), ` (${fmtBytes(f.bytes)}) `, show));
      }
      box.append(ul);
    }
    /* A figure comes as PNG and SVG of one name: one thumbnail, a link per format. */
    const figures = new Map();
    for (const f of files.filter((x) => /\.(png|svg|jpe?g)$/i.test(x.path))) {
      const stem = f.path.replace(/\.[^.]+$/, '');
      figures.set(stem, (figures.get(stem) || []).concat(f));
    }
    if (figures.size) {
      box.append(el('h3', { text: 'Figures' }));
      const figs = el('div', { class: 'figs' });
      for (const [stem, list] of figures) {
        const thumb = list.find((f) => /\.png$/i.test(f.path)) || list[0];
        const links = el('span', { class: 'formats' });
        list.forEach((f, k) => {
          if (k) links.append(' · ');
          links.append(el('a', { href: reportHref(f.path), text: f.path.split('.').pop().toUpperCase() }));
        });
        figs.append(el('figure', {},
                       el('a', { href: reportHref(thumb.path), 'aria-label': stem },
                          el('img', { src: reportHref(thumb.path), alt: stem, loading: 'lazy' })),
                       el('figcaption', {}, stem + ' ', links)));
      }
      box.append(figs);
    }
    const json = files.filter((f) => /\.json$/i.test(f.path));
    if (json.length) {
      box.append(el('h3', { text: 'Data (JSON)' }));
      const ul = el('ul');
      for (const f of json) ul.append(el('li', {}, el('a', { href: reportHref(f.path), text: f.path }), ` (${fmtBytes(f.bytes)})`));
      box.append(ul);
    }
    if (data.truncated) box.append(el('p', { class: 'hint', text: 'Only the first files are listed.' }));
  }

  async function loadReports() {
    try {
      const r = await fetch('/v1/reports', { headers: { Accept: 'application/json' } });
      renderReports(r.ok ? await r.json() : null);
    } catch (e) {
      renderReports(null);
    }
  }

  /* ------------------------------------------------------------ wiring */

  function init() {
    for (const id of ['file', 'camera']) {
      $(id).addEventListener('change', (ev) => {
        const f = ev.target.files && ev.target.files[0];
        if (f) setFile(f);
        ev.target.value = ''; /* choosing the same file again fires change again */
      });
    }
    const drop = $('drop');
    drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (ev) => {
      ev.preventDefault();
      drop.classList.remove('over');
      const f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
      if (f) setFile(f);
    });
    /* A drop outside the zone must not navigate away from the page. */
    window.addEventListener('dragover', (ev) => ev.preventDefault());
    window.addEventListener('drop', (ev) => ev.preventDefault());
    document.addEventListener('paste', (ev) => {
      const items = (ev.clipboardData && ev.clipboardData.files) || [];
      if (items.length) setFile(items[0]);
    });
    $('form').addEventListener('submit', (ev) => { ev.preventDefault(); classify(); });
    $('models').addEventListener('change', updateButton);
    loadModels();
    loadReports();
  }

  init();
})();
