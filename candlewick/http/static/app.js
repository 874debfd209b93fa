/* Candlewick live dashboard.
 *
 * Plain JavaScript, no dependencies, no build step. Data comes from the HTTP API
 * (/api/v1/...) and the SSE stream (/realtime/ticks); every URL is relative unless
 * `?api=<base>` / `?realtime=<url>` point somewhere else. The chart is our own <canvas>
 * code: it draws only the visible candles, so thousands of candles stay smooth.
 *
 * Test hook: after every draw, window.__candlewick = {candles, smaPoints, lastClose,
 * lastBucket, state, symbol, interval, ...}.
 */
(() => {
  'use strict';

  // ---------------------------------------------------------------- configuration
  const params = new URLSearchParams(location.search);
  const API_ROOT = normaliseRoot(params.get('api'));
  const REALTIME_URL = params.get('realtime') || url('realtime/ticks');
  const INTERVALS = { '1m': 60, '5m': 300, '15m': 900, '1h': 3600, '1d': 86400 }; // the API's, see docs/API.md
  const IV_WORDS = { '1m': 'one-minute', '5m': 'five-minute', '15m': '15-minute', '1h': 'hourly', '1d': 'daily' };
  const SMA_N = 10;
  const DAY = 86400;
  const PAGE = 1000;              // candles per history request (contract allows up to 2000)
  const MAX_CANDLES = 20000;      // keep memory bounded when panning far back
  const POLL_MS = 2000;           // latest tick + metrics
  const HEALTH_MS = 5000;
  const SYMBOLS_MS = 30000;       // the symbol list (also after every reconnect and resync)
  const REFS_MS = 600000;         // the change column's reference price is re-read this often

  function normaliseRoot(raw) {
    if (!raw) return '';
    let r = raw.trim().replace(/\/+$/, '');
    r = r.replace(/\/api\/v1$/, '');   // accept both "http://h:8000" and "http://h:8000/api/v1"
    return r;
  }
  function url(path) { return API_ROOT ? API_ROOT + '/' + path : path; }
  function encSym(s) { return encodeURIComponent(s).replace(/%2F/gi, '/').replace(/%3A/gi, ':'); }

  // ---------------------------------------------------------------- state
  const S = {
    symbols: new Map(),   // symbol -> {symbol, last, ref, refTs, refAt, prev, el, refLoaded, seen}
    symbol: null,
    interval: params.get('interval') in INTERVALS ? params.get('interval') : '1m',
    candles: [],          // oldest first: {t, o, h, l, c, v, sma}
    nextCursor: null,
    loading: false,
    loadingOlder: false,
    gen: 0,               // bumps on symbol/interval change; stale responses are dropped
    pending: [],          // ticks for the chosen symbol that arrived while history loads
    parts: new Map(),     // rolled intervals: interval bucket -> Map(minute -> 1m candle)
    latest: null,
    conn: 'connecting',
    resyncs: 0,           // resync events handled (each refills from history)
    refills: 0,           // history loads completed
    view: { spacing: 9, offset: 0, home: 9 },
    hover: null,          // {x, y} in CSS pixels
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    symbols: $('symbols'), symbolsEmpty: $('symbols-empty'), filter: $('symbol-filter'),
    title: $('sym-title'), last: $('sym-last'), change: $('sym-change'),
    intervals: $('intervals'), latestBtn: $('btn-latest'), ohlc: $('ohlc'),
    wrap: $('chart-wrap'), canvas: $('chart'), msg: $('chart-msg'),
    latest: $('latest'), metrics: $('metrics'), metricsWindow: $('metrics-window'),
    smaLegend: $('legend-sma'), smaWait: $('sma-wait'),
    conn: $('conn'), connText: $('conn-text'), healthPill: $('health-pill'), healthSub: $('health-sub'),
    checks: $('checks'), actors: $('actors'),
  };
  const ctx = el.canvas.getContext('2d');

  // ---------------------------------------------------------------- formatting
  const fmtCache = new Map();
  function nf(dec) {
    let f = fmtCache.get(dec);
    if (!f) {
      f = new Intl.NumberFormat('en-US', { minimumFractionDigits: dec, maximumFractionDigits: dec });
      fmtCache.set(dec, f);
    }
    return f;
  }
  function decimalsFor(p) {
    const a = Math.abs(p);
    if (!isFinite(a) || a === 0) return 2;
    if (a >= 1000) return 2;
    if (a >= 10) return 3;
    if (a >= 1) return 4;
    return Math.min(10, 4 - Math.floor(Math.log10(a)));
  }
  function fmtPrice(p, ref) {
    if (p == null || !isFinite(p)) return '—';
    return nf(decimalsFor(ref != null ? ref : p)).format(p);
  }
  function fmtVol(v) {
    if (v == null || !isFinite(v)) return '—';
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + 'B';
    if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + 'K';
    if (a >= 100) return v.toFixed(1);
    if (a >= 1) return v.toFixed(3);
    return v.toFixed(4);
  }
  function fmtPct(x) {
    if (x == null || !isFinite(x)) return '—';
    return (x > 0 ? '+' : '') + x.toFixed(2) + '%';
  }
  const pad2 = (n) => String(n).padStart(2, '0');
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  function fmtClock(ts, secs) {
    const d = new Date(ts * 1000);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + (secs ? ':' + pad2(d.getSeconds()) : '');
  }
  function fmtDay(ts) { const d = new Date(ts * 1000); return MONTHS[d.getMonth()] + ' ' + d.getDate(); }
  function fmtDateTime(ts, secs) { return fmtDay(ts) + ' ' + fmtClock(ts, secs); }
  function fmtAge(s) {
    if (s < 60) return Math.round(s) + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }
  function dirClass(x) { return x > 0 ? 'up' : x < 0 ? 'down' : 'flat'; }

  // ---------------------------------------------------------------- HTTP
  async function getJSON(path, { timeout = 10000, allow = [] } = {}) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeout);
    try {
      const res = await fetch(url(path), { signal: ctl.signal, headers: { Accept: 'application/json' } });
      if (!res.ok && !allow.includes(res.status)) {
        const err = new Error('HTTP ' + res.status + ' for ' + path);
        err.status = res.status;
        throw err;
      }
      return { status: res.status, body: await res.json() };
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------------------------------------------------------------- symbols
  function symbolRow(sym) {
    let row = S.symbols.get(sym);
    if (row) return row;
    const li = document.createElement('li');
    li.setAttribute('role', 'option');
    li.tabIndex = 0;
    li.dataset.symbol = sym;
    li.innerHTML = '<span class="s-name"></span><span class="s-last">—</span><span class="s-chg flat">—</span>';
    li.firstChild.textContent = sym;
    row = { symbol: sym, last: null, ref: null, refTs: null, refAt: 0, prev: null, el: li, refLoaded: false,
      flash: 0, seen: performance.now() };
    S.symbols.set(sym, row);
    // keep the list ordered by symbol, like the API
    const after = [...el.symbols.children].find((n) => n.dataset.symbol > sym);
    el.symbols.insertBefore(li, after || null);
    applyFilter(li);
    el.symbolsEmpty.hidden = true;
    if (sym === S.symbol) li.classList.add('active');
    return row;
  }

  function dropRow(row) {
    row.el.remove();
    S.symbols.delete(row.symbol);
    dirtyRows.delete(row);
  }

  function applyFilter(li) {
    const q = el.filter.value.trim().toUpperCase();
    li.hidden = q !== '' && !li.dataset.symbol.toUpperCase().includes(q);
  }
  function firstVisibleRow() { return [...el.symbols.children].find((li) => !li.hidden) || null; }

  // The change column compares with the price a day ago, or, for younger data, with the first
  // trade; it says which: "24h", or "since 12:03 (41m)".
  function changeOf(row) { return row.ref && row.last != null ? ((row.last - row.ref) / row.ref) * 100 : null; }
  function changeSpan(row) {
    if (row.refTs == null) return '';
    const age = Math.max(0, Date.now() / 1000 - row.refTs);
    if (Math.abs(age - DAY) < 900) return '24h';
    return 'since ' + (age >= DAY / 2 ? fmtDateTime : fmtClock)(row.refTs) + ' (' + fmtAge(age) + ')';
  }

  function renderRow(row) {
    const [, lastEl, chgEl] = row.el.children;
    lastEl.textContent = fmtPrice(row.last);
    const pct = changeOf(row);
    chgEl.textContent = fmtPct(pct);
    chgEl.className = 's-chg ' + dirClass(pct || 0);
    chgEl.title = changeSpan(row);
    // the last price takes the colour of the last move, like an exchange ticker
    if (row.flash) lastEl.className = 's-last ' + (row.flash > 0 ? 'up' : 'down');
    if (row.symbol === S.symbol) renderQuote(row);
  }

  function renderQuote(row) {
    el.title.textContent = row ? row.symbol : (S.symbol || '—');
    if (!row) return;
    el.last.textContent = fmtPrice(row.last);
    el.last.className = 'last ' + (row.prev != null ? dirClass(row.last - row.prev) : '');
    const pct = changeOf(row);
    el.change.textContent = fmtPct(pct) + (pct != null ? ' ' + changeSpan(row) : '');
    el.change.className = 'chg ' + dirClass(pct || 0);
  }

  // The list is the API's: rows it no longer returns (gone after a restart, say) are dropped,
  // unless a tick for them arrived since we asked.
  async function loadSymbols() {
    const asked = performance.now();
    try {
      const { body } = await getJSON('api/v1/symbols');
      const listed = new Set(body.map((s) => s.symbol));
      for (const row of [...S.symbols.values()]) {
        if (!listed.has(row.symbol) && row.seen < asked) dropRow(row);
      }
      for (const s of body) symbolRow(s.symbol);
      for (const row of S.symbols.values()) markRow(row); // the change spans age
      el.symbolsEmpty.hidden = S.symbols.size > 0;
      if (!S.symbol && body.length) select(body[0].symbol);
      loadRefs();
    } catch (e) {
      if (!S.symbols.size) { el.symbolsEmpty.hidden = false; }
    }
  }

  // Reference price for the change column: the close of the last minute before 24 h ago, or,
  // when the data is younger, the first trade (its hour from hourly candles, then its minute).
  async function fetchRef(sym) {
    const path = `api/v1/ticks/${encSym(sym)}/history?view=ohlc1m`;
    const items = async (query) => (await getJSON(path + query)).body.items || [];
    const now = Date.now() / 1000;
    const hours = await items('&interval=1h&limit=25');
    if (!hours.length) return null;
    const last = hours[hours.length - 1].close;
    if (hours[0].ts <= now - DAY) {
      const [dayAgo] = await items(`&limit=1&before=${Math.floor(now - DAY)}`);
      if (dayAgo) return { ref: dayAgo.close, refTs: now - DAY, last };
    }
    const h0 = hours[0].ts;
    const first = (await items(`&limit=60&before=${h0 + 3600}`)).find((m) => m.ts >= h0) || hours[0];
    return { ref: first.open, refTs: first.ts, last };
  }

  let refsRunning = false;
  async function loadRefs() {
    if (refsRunning) return;
    refsRunning = true;
    try {
      const stale = Date.now() - REFS_MS;
      const todo = [...S.symbols.values()].filter((r) => !r.refLoaded || r.refAt < stale).slice(0, 300);
      const worker = async () => {
        while (todo.length) {
          const row = todo.shift();
          try {
            const got = await fetchRef(row.symbol);
            row.refLoaded = true;
            row.refAt = Date.now();
            if (got) {
              row.ref = got.ref;
              row.refTs = got.refTs;
              if (row.last == null) row.last = got.last;
              markRow(row);
            }
          } catch (e) { /* try again on the next refresh */ }
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
    } finally {
      refsRunning = false;
    }
  }

  const dirtyRows = new Set();
  function markRow(row) { dirtyRows.add(row); schedule(); }

  el.symbols.addEventListener('click', (ev) => {
    const li = ev.target.closest('li');
    if (li) select(li.dataset.symbol);
  });
  el.symbols.addEventListener('keydown', (ev) => {
    const li = ev.target.closest('li');
    if (!li) return;
    if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); select(li.dataset.symbol); }
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      let n = li;
      do { n = ev.key === 'ArrowDown' ? n.nextElementSibling : n.previousElementSibling; } while (n && n.hidden);
      if (n) { n.focus(); select(n.dataset.symbol); }
    }
  });
  el.filter.addEventListener('input', () => { for (const li of el.symbols.children) applyFilter(li); });
  el.filter.addEventListener('keydown', (ev) => { // Enter picks the first match, ArrowDown walks the matches
    const li = firstVisibleRow();
    if (!li || (ev.key !== 'Enter' && ev.key !== 'ArrowDown')) return;
    ev.preventDefault();
    if (ev.key === 'Enter') select(li.dataset.symbol); else li.focus();
    li.scrollIntoView({ block: 'nearest' });
  });

  function select(sym) {
    if (!sym) return;
    if (sym === S.symbol && S.candles.length) return;
    S.symbol = sym;
    for (const li of el.symbols.children) li.classList.toggle('active', li.dataset.symbol === sym);
    const row = S.symbols.get(sym);
    renderQuote(row || null);
    if (!row) el.title.textContent = sym;
    document.title = sym + ' · Candlewick';
    rememberInUrl();
    S.view.offset = 0;
    S.latest = null;
    renderLatest(null);
    renderMetrics(null);
    loadHistory(false);
    pollDetails();
  }

  function rememberInUrl() {
    const p = new URLSearchParams(location.search);
    if (S.symbol) p.set('symbol', S.symbol);
    p.set('interval', S.interval);
    history.replaceState(null, '', location.pathname + '?' + p.toString() + location.hash);
  }

  // ---------------------------------------------------------------- intervals
  el.intervals.addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-iv]');
    if (!b || b.dataset.iv === S.interval) return;
    S.interval = b.dataset.iv;
    syncIntervalButtons();
    rememberInUrl();
    S.view.offset = 0;
    loadHistory(false);
  });
  function syncIntervalButtons() {
    for (const b of el.intervals.querySelectorAll('button')) b.classList.toggle('active', b.dataset.iv === S.interval);
  }
  el.latestBtn.addEventListener('click', resetView);

  // ---------------------------------------------------------------- history
  function toCandle(it) {
    return { t: it.ts, o: it.open, h: it.high, l: it.low, c: it.close, v: it.volume, sma: it.sma10 };
  }

  function historyPath(iv, limit, before) {
    let p = `api/v1/ticks/${encSym(S.symbol)}/history?view=ohlc1m&limit=${limit}`;
    if (iv !== '1m') p += `&interval=${iv}`;
    if (before != null) p += `&before=${before}`;
    return p;
  }

  // keepView: a refill (resync, late tick) keeps the user's zoom and pan.
  async function loadHistory(keepView) {
    if (!S.symbol) return;
    const gen = ++S.gen;
    const iv = S.interval;
    const secs = INTERVALS[iv];
    S.loading = true;
    S.pending = [];
    if (!keepView) {
      S.candles = [];
      S.parts = new Map();
      S.nextCursor = null;
      showMsg('Loading ' + S.symbol + ' …');
      schedule(true);
    }
    try {
      const { body } = await getJSON(historyPath(iv, PAGE));
      let minutes = null;
      if (iv !== '1m') {
        // the minutes of the newest interval candle, so live ticks merge into it exactly
        const m = await getJSON(historyPath('1m', secs / 60));
        minutes = m.body.items || [];
      }
      if (gen !== S.gen) return;
      const candles = (body.items || []).map(toCandle);
      const parts = new Map();
      if (minutes && candles.length) {
        const lastBucket = candles[candles.length - 1].t;
        const mp = new Map();
        for (const it of minutes) {
          if (it.ts >= lastBucket && it.ts < lastBucket + secs) {
            mp.set(it.ts, { bucket_start: it.ts, open: it.open, high: it.high, low: it.low, close: it.close, volume: it.volume });
          }
        }
        if (mp.size) {
          parts.set(lastBucket, mp);
          // the minutes were read after the rolled candle: they may already be newer
          Object.assign(candles[candles.length - 1], rollMinutes(mp));
        }
      }
      S.candles = candles;
      S.parts = parts;
      S.refills++;
      if (!keepView) { // a short history fills the width instead of huddling on the right
        const plotW = W - AXIS_W;
        S.view.spacing = Math.max(6, Math.min(36, plotW / (candles.length + 4)));
        S.view.home = S.view.spacing;
      }
      S.nextCursor = body.nextCursor;
      S.loading = false;
      const queued = S.pending;
      S.pending = [];
      for (const d of queued) applyTick(d);
      showMsg(candles.length ? null : 'No candles yet for ' + S.symbol + ' — waiting for ticks…');
      schedule(true);
    } catch (e) {
      if (gen !== S.gen) return;
      S.loading = false;
      showMsg(e.status === 400 ? 'Invalid symbol' : 'Could not load history (' + e.message + '); retrying…');
      schedule(true);
      setTimeout(() => { if (gen === S.gen) loadHistory(keepView); }, 3000);
    }
  }

  async function loadOlder() {
    if (S.loadingOlder || S.loading || S.nextCursor == null || !S.candles.length) return;
    if (S.candles.length >= MAX_CANDLES) return;
    const gen = S.gen;
    S.loadingOlder = true;
    try {
      const { body } = await getJSON(historyPath(S.interval, PAGE, S.nextCursor));
      if (gen !== S.gen) return;
      const first = S.candles[0].t;
      const older = (body.items || []).map(toCandle).filter((c) => c.t < first);
      if (older.length) S.candles = older.concat(S.candles);
      S.nextCursor = older.length ? body.nextCursor : null;
      schedule(true);
    } catch (e) { /* next pan retries */ } finally {
      if (gen === S.gen) S.loadingOlder = false;
    }
  }

  let refillTimer = null;
  function scheduleRefill(delay = 300) {
    if (refillTimer) return; // one refill at a time; ticks keep coming meanwhile
    refillTimer = setTimeout(() => { refillTimer = null; loadHistory(true); }, delay);
  }

  function showMsg(text) {
    el.msg.hidden = !text;
    el.msg.textContent = text || '';
  }

  // ---------------------------------------------------------------- live merge
  function findIndex(arr, t) { // binary search by bucket; returns index or -(insertion point) - 1
    let lo = 0, hi = arr.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = arr[mid].t;
      if (v === t) return mid;
      if (v < t) lo = mid + 1; else hi = mid - 1;
    }
    return -lo - 1;
  }

  // A snapshot of a candle only ever grows in volume; an older snapshot (a tick that was
  // already in the history response) must not roll the candle back.
  function newer(snap, cur) { return !cur || snap.volume >= cur.v; }

  function recomputeSma(from) {
    const a = S.candles;
    for (let i = Math.max(from, 9); i < a.length && i <= from + 9; i++) {
      let s = 0;
      for (let k = i - 9; k <= i; k++) s += a[k].c;
      a[i].sma = s / 10;
    }
  }

  function putCandle(c, serverSma) {
    const a = S.candles;
    const n = a.length;
    if (!n || c.t > a[n - 1].t) {
      c.sma = serverSma !== undefined ? serverSma : null;
      a.push(c);
      if (S.view.offset > 0.5) S.view.offset += 1; // the user looks at the past: keep it still
      if (serverSma === undefined) recomputeSma(a.length - 1);
      return;
    }
    const i = findIndex(a, c.t);
    if (i >= 0) {
      const cur = a[i];
      cur.o = c.o; cur.h = c.h; cur.l = c.l; cur.c = c.c; cur.v = c.v;
      if (serverSma !== undefined) { cur.sma = serverSma; recomputeSma(i + 1); } else recomputeSma(i);
    } else {
      const at = -i - 1;
      if (at === 0) return; // older than everything loaded: nothing visible changes
      a.splice(at, 0, c);
      c.sma = null;
      if (S.view.offset > 0.5) S.view.offset += 1;
      recomputeSma(at);
    }
  }

  function applyTick(d) {
    const c1 = d.candle1m;
    if (!c1) return;
    const b = c1.bucket_start != null ? c1.bucket_start : c1.ts;
    const snap = { bucket_start: b, open: c1.open, high: c1.high, low: c1.low, close: c1.close, volume: c1.volume };
    const secs = INTERVALS[S.interval];
    if (secs === 60) {
      const i = findIndex(S.candles, b);
      if (i >= 0 && !newer(snap, S.candles[i])) return;
      putCandle({ t: b, o: snap.open, h: snap.high, l: snap.low, c: snap.close, v: snap.volume }, d.sma10);
      return;
    }
    const ib = Math.floor(b / secs) * secs;
    const a = S.candles;
    let mp = S.parts.get(ib);
    if (!mp) {
      if (a.length && ib <= a[a.length - 1].t) { scheduleRefill(); return; } // late tick in an old interval
      mp = new Map();
      S.parts.set(ib, mp);
      for (const k of [...S.parts.keys()]) if (k < ib - 2 * secs) S.parts.delete(k);
    }
    const prev = mp.get(b);
    if (prev && snap.volume < prev.volume) return;
    mp.set(b, snap);
    putCandle({ t: ib, ...rollMinutes(mp) });
  }

  function rollMinutes(mp) {
    const mins = [...mp.values()].sort((x, y) => x.bucket_start - y.bucket_start);
    let h = -Infinity, l = Infinity, v = 0;
    for (const m of mins) { if (m.high > h) h = m.high; if (m.low < l) l = m.low; v += m.volume; }
    return { o: mins[0].open, h, l, c: mins[mins.length - 1].close, v };
  }

  function onTick(d) {
    const row = symbolRow(d.symbol);
    row.seen = performance.now();
    if (!row.refLoaded && row.ref == null) { row.ref = d.price; row.refTs = d.ts; loadRefs(); }
    if (row.last !== d.price) {
      if (row.last != null) row.flash = Math.sign(d.price - row.last);
      row.prev = row.last;
      row.last = d.price;
      markRow(row);
    }
    if (d.symbol !== S.symbol) return;
    if (!S.latest || d.ts >= S.latest.ts) {
      S.latest = { symbol: d.symbol, price: d.price, ts: d.ts, volume: d.volume };
      renderLatest(S.latest);
    }
    soonDetails();
    if (S.loading) { S.pending.push(d); return; }
    applyTick(d);
    if (el.msg.textContent && S.candles.length) showMsg(null);
    schedule(true);
  }

  // ---------------------------------------------------------------- realtime
  let es = null;
  let everLive = false;
  let reconnectTimer = null;
  let resyncTimer = null;
  let backoff = 1000;

  function setConn(state) {
    S.conn = state;
    el.conn.className = 'conn conn-' + state;
    el.connText.textContent = state;
    publishHook();
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (es) es.close();
    setConn(everLive ? 'reconnecting' : 'connecting');
    try {
      es = new EventSource(REALTIME_URL);
    } catch (e) {
      setConn('offline');
      reconnectTimer = setTimeout(connect, backoff);
      return;
    }
    es.onmessage = (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      if (d && d.kind === 'tick') { onTick(d); return; }
      if (d && d.ok) { // the hello message: the stream is up
        if (everLive) loadSymbols(); // a reconnect, maybe to a restarted server with other symbols
        everLive = true;
        backoff = 1000;
        if (S.conn !== 'resynced') setConn('live');
      }
    };
    es.addEventListener('resync', () => {
      // Some events were lost (reconnect past the replay buffer, or we fell behind):
      // refill the chart and the list from history.
      S.resyncs++;
      setConn('resynced');
      scheduleRefill(50);
      for (const row of S.symbols.values()) row.refLoaded = false;
      loadSymbols();
      pollDetails();
      clearTimeout(resyncTimer);
      resyncTimer = setTimeout(() => { if (S.conn === 'resynced') setConn('live'); }, 5000);
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) { // the browser gave up: retry ourselves
        setConn('offline');
        backoff = Math.min(backoff * 2, 30000);
        reconnectTimer = setTimeout(connect, backoff);
      } else {
        setConn('reconnecting');
      }
    };
  }

  // ---------------------------------------------------------------- side panels
  function fill(dl, values) {
    for (const dd of dl.querySelectorAll('dd')) {
      const k = dd.dataset.k;
      dd.textContent = values ? (values[k] != null ? values[k] : '—') : '—';
    }
  }
  function renderLatest(t) {
    fill(el.latest, t && {
      price: fmtPrice(t.price), volume: fmtVol(t.volume), ts: fmtDateTime(t.ts, true),
    });
  }
  function renderMetrics(m) {
    if (!m) { fill(el.metrics, null); el.metricsWindow.textContent = ''; return; }
    const ref = m.last != null ? m.last : m.avg;
    fill(el.metrics, {
      count: String(m.count), volume: fmtVol(m.volume), min: fmtPrice(m.min, ref), max: fmtPrice(m.max, ref),
      avg: fmtPrice(m.avg, ref), vwap: fmtPrice(m.vwap, ref), last: fmtPrice(m.last, ref),
    });
    el.metricsWindow.textContent = fmtClock(m.windowStart) + '–' + fmtClock(m.windowEnd);
  }

  // metrics follow the selected symbol's ticks, at most about once a second
  let detailsTimer = null;
  function soonDetails() {
    if (detailsTimer) return;
    detailsTimer = setTimeout(() => { detailsTimer = null; pollDetails(); }, 700);
  }

  async function pollDetails() {
    const sym = S.symbol;
    if (!sym) return;
    const [lt, mt] = await Promise.allSettled([
      getJSON(`api/v1/ticks/${encSym(sym)}`, { allow: [404] }),
      getJSON(`api/v1/metrics/${encSym(sym)}`, { allow: [404] }),
    ]);
    if (sym !== S.symbol) return;
    if (lt.status === 'fulfilled' && lt.value.status === 200) {
      const t = lt.value.body;
      if (!S.latest || t.ts >= S.latest.ts) { S.latest = t; renderLatest(t); }
    }
    if (mt.status === 'fulfilled') renderMetrics(mt.value.status === 200 ? mt.value.body : null);
  }

  async function pollHealth() {
    const [rd, sv] = await Promise.allSettled([
      getJSON('api/v1/health/readiness', { allow: [503] }),
      getJSON('ops/health/supervisor'),
    ]);
    if (rd.status === 'fulfilled') {
      const b = rd.value.body || {};
      const ready = b.status === 'ready';
      el.healthPill.textContent = ready ? 'ready' : 'not ready';
      el.healthPill.className = 'pill ' + (ready ? 'pill-ok' : 'pill-bad');
      el.checks.replaceChildren(...Object.entries(b.checks || {}).map(([k, v]) => {
        const s = document.createElement('span');
        s.className = 'pill ' + (v === 'ok' ? 'pill-ok' : v === 'off' ? 'pill-muted' : 'pill-bad');
        s.textContent = k + ' ' + v;
        return s;
      }));
    } else {
      el.healthPill.textContent = 'unreachable';
      el.healthPill.className = 'pill pill-bad';
    }
    if (sv.status === 'fulfilled') renderTree(sv.value.body || {});
  }

  function renderTree(tree) {
    const rows = [];
    const bits = [];
    if (tree.store) bits.push('store ' + tree.store);
    if (tree.uptimeSeconds != null) bits.push('up ' + fmtAge(tree.uptimeSeconds));
    if (tree.admission && tree.admission.capacity) {
      bits.push('in flight ' + tree.admission.inFlightTicks + '/' + tree.admission.capacity);
    }
    el.healthSub.textContent = bits.join(' · ');
    const add = (node, child) => rows.push({ node, child });
    add(tree, false);
    for (const ch of tree.children || []) {
      add(ch, false);
      const kids = (ch.children || []).slice();
      if (!kids.length) continue;
      // the busiest and most troubled first; a long tail is summarised
      kids.sort((a, b) => (b.restarts || 0) - (a.restarts || 0)
        || ((b.mailbox && b.mailbox.depth) || 0) - ((a.mailbox && a.mailbox.depth) || 0)
        || String(a.name).localeCompare(String(b.name)));
      const shown = kids.slice(0, 12);
      for (const k of shown) add(k, true);
      if (kids.length > shown.length) rows.push({ more: kids.length - shown.length });
    }
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const tr = document.createElement('tr');
      if (r.more) {
        tr.className = 'child';
        tr.innerHTML = '<td colspan="4"></td>';
        tr.firstChild.textContent = '… ' + r.more + ' more';
        frag.appendChild(tr);
        continue;
      }
      const n = r.node;
      if (r.child) tr.className = 'child';
      const restarts = n.restarts != null ? n.restarts
        : (n.children || []).reduce((s, k) => s + (k.restarts || 0), 0);
      tr.innerHTML = '<td></td><td><span class="state"></span></td><td class="num"></td><td></td>';
      const [name, state, rs, mb] = tr.children;
      name.textContent = n.name;
      name.title = n.lastError ? n.name + ': ' + n.lastError : n.name;
      state.firstChild.textContent = n.state || '—';
      state.firstChild.className = 'state state-' + String(n.state || '').toLowerCase();
      rs.textContent = String(restarts);
      if (restarts > 0) rs.className = 'num down';
      if (n.mailbox && n.mailbox.capacity) {
        const frac = Math.min(1, (n.mailbox.depth || 0) / n.mailbox.capacity);
        mb.innerHTML = '<div class="mbox"><span></span><div class="bar"><i></i></div></div>';
        const txt = mb.querySelector('span');
        txt.textContent = n.mailbox.depth + '/' + n.mailbox.capacity;
        if (n.mailbox.peak != null) txt.title = 'peak ' + n.mailbox.peak;
        const i = mb.querySelector('i');
        i.style.width = Math.max(frac * 100, frac > 0 ? 4 : 0) + '%';
        if (frac > 0.8) i.className = 'hot'; else if (frac > 0.5) i.className = 'warn';
      } else if (n.subscribers != null) {
        mb.innerHTML = '<div class="mbox"></div>';
        mb.firstChild.textContent = n.subscribers + ' SSE';
        mb.firstChild.title = n.subscribers + ' SSE subscriber' + (n.subscribers === 1 ? '' : 's')
          + (n.events_dropped != null ? ', ' + n.events_dropped + ' events dropped' : '');
      }
      frag.appendChild(tr);
    }
    el.actors.replaceChildren(frag);
  }

  // ---------------------------------------------------------------- chart
  const C = {
    up: '#26a69a', down: '#ef5350', sma: '#f0b429', grid: '#1a2029', axis: '#7d8798',
    text: '#aab3c2', cross: '#5d6878', bg: '#0d1118', label: '#222a38', faint: '#4f5866',
  };
  const AXIS_W = 74, TIME_H = 24, TOP = 10;
  let dpr = 1, W = 0, H = 0;

  function resize() {
    const r = el.wrap.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1;
    W = Math.max(1, Math.floor(r.width));
    H = Math.max(1, Math.floor(r.height));
    el.canvas.width = Math.round(W * dpr);
    el.canvas.height = Math.round(H * dpr);
    schedule(true);
  }

  // Geometry: candle i (0 = oldest) sits at x(i). With offset 0 the newest candle is at its
  // home position (a small margin from the right edge); offset > 0 pans into the past (the
  // newest moves right, off screen), offset < 0 leaves empty space on the right.
  function geom() {
    const plotW = W - AXIS_W;
    const sp = S.view.spacing;
    const n = S.candles.length;
    const right = plotW - sp * 2.5;
    const x = (i) => right - (n - 1 - i - S.view.offset) * sp;
    const idxAt = (px) => n - 1 - S.view.offset - (right - px) / sp;
    return { plotW, sp, n, x, idxAt, right };
  }

  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }
  const TIME_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

  function clampView() {
    const { plotW, sp, n } = geom();
    const visible = plotW / sp;
    S.view.offset = Math.max(-visible * 0.6, Math.min(Math.max(0, n - 3), S.view.offset));
  }

  let frameReq = 0, chartDirty = false;
  function schedule(chart) {
    if (chart) chartDirty = true;
    if (frameReq) return;
    const run = () => { frameReq = 0; frame(); };
    // hidden tabs get no animation frames; a timer keeps the state (and the hook) current
    frameReq = document.hidden ? setTimeout(run, 250) : requestAnimationFrame(run);
  }
  function frame() {
    for (const row of dirtyRows) renderRow(row);
    dirtyRows.clear();
    if (chartDirty) { chartDirty = false; draw(); }
  }

  function draw() {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = C.bg;
    ctx.fillRect(0, 0, W, H);
    clampView();
    const a = S.candles;
    const { plotW, sp, n, x, idxAt } = geom();
    const paneBottom = H - TIME_H;
    const volH = Math.round((paneBottom - TOP) * 0.18);
    const priceBottom = paneBottom - volH - 8;
    let drawn = 0, smaPoints = 0;

    ctx.font = '11px ui-monospace, "SF Mono", Menlo, Consolas, monospace';
    ctx.textBaseline = 'middle';

    if (n) {
      const i0 = Math.max(0, Math.floor(idxAt(0)) - 1);
      const i1 = Math.min(n - 1, Math.ceil(idxAt(plotW)) + 1);
      // scale from what is visible
      let lo = Infinity, hi = -Infinity, vmax = 0;
      for (let i = i0; i <= i1; i++) {
        const c = a[i];
        if (c.l < lo) lo = c.l;
        if (c.h > hi) hi = c.h;
        if (c.sma != null) { if (c.sma < lo) lo = c.sma; if (c.sma > hi) hi = c.sma; }
        if (c.v > vmax) vmax = c.v;
      }
      if (!isFinite(lo)) { lo = a[n - 1].l; hi = a[n - 1].h; }
      if (hi - lo < Math.abs(hi) * 1e-6 || hi === lo) { const m = Math.abs(hi) * 0.001 || 1; lo -= m; hi += m; }
      const padY = (hi - lo) * 0.08;
      lo -= padY; hi += padY;
      const y = (p) => TOP + (hi - p) / (hi - lo) * (priceBottom - TOP);
      const pFromY = (py) => hi - (py - TOP) / (priceBottom - TOP) * (hi - lo);
      const dec = decimalsFor(a[n - 1].c);

      // grid + price axis
      const step = niceStep((hi - lo) / Math.max(2, (priceBottom - TOP) / 56));
      const mag = Math.floor(Math.log10(step));
      const axDec = Math.max(0, Math.min(10, -mag + (Math.abs(step / Math.pow(10, mag) - 2.5) < 1e-9 ? 1 : 0)));
      ctx.strokeStyle = C.grid;
      ctx.lineWidth = 1;
      ctx.fillStyle = C.axis;
      ctx.textAlign = 'left';
      ctx.beginPath();
      for (let p = Math.ceil(lo / step) * step; p <= hi; p += step) {
        const yy = Math.round(y(p)) + 0.5;
        ctx.moveTo(0, yy); ctx.lineTo(plotW, yy);
        if (yy < priceBottom - 4) ctx.fillText(nf(axDec).format(p), plotW + 8, yy); // clear of the volume scale
      }
      ctx.stroke();

      // time axis: a label where the time crosses a step boundary, at least ~90px apart
      const secs = INTERVALS[S.interval];
      const tstep = TIME_STEPS.find((s) => (s / secs) * sp >= 90) || TIME_STEPS[TIME_STEPS.length - 1];
      ctx.textAlign = 'center';
      ctx.beginPath();
      let lastLabelX = -Infinity, prevKey = null;
      for (let i = i0; i <= i1; i++) {
        const t = a[i].t;
        const tz = t - new Date(t * 1000).getTimezoneOffset() * 60; // boundaries in local time
        const key = Math.floor(tz / tstep);
        if (prevKey !== null && key !== prevKey) {
          const xx = Math.round(x(i)) + 0.5;
          if (xx - lastLabelX >= 80 && xx > 20 && xx < plotW - 20) {
            ctx.moveTo(xx, TOP); ctx.lineTo(xx, paneBottom);
            const newDay = tz % 86400 < secs || tstep >= 86400;
            ctx.fillText(newDay ? fmtDay(t) : fmtClock(t), xx, paneBottom + TIME_H / 2);
            lastLabelX = xx;
          }
        }
        prevKey = key;
      }
      ctx.stroke();

      // clip candles to the plot area
      ctx.save();
      ctx.beginPath();
      ctx.rect(0, 0, plotW, paneBottom);
      ctx.clip();

      // volume bars, under their scale's gridlines (the largest visible volume and half of it)
      const bw = Math.max(1, Math.floor(sp * 0.7));
      const vy = (v) => paneBottom - (vmax > 0 ? (v / vmax) * volH : 0);
      const volTicks = vmax > 0 ? [vmax, vmax / 2] : [];
      ctx.strokeStyle = C.grid;
      ctx.beginPath();
      for (const v of volTicks) { const yy = Math.round(vy(v)) + 0.5; ctx.moveTo(0, yy); ctx.lineTo(plotW, yy); }
      ctx.stroke();
      for (const up of [true, false]) {
        ctx.fillStyle = up ? 'rgba(38,166,154,0.35)' : 'rgba(239,83,80,0.35)';
        ctx.beginPath();
        for (let i = i0; i <= i1; i++) {
          const c = a[i];
          if ((c.c >= c.o) !== up) continue;
          const xx = Math.round(x(i) - bw / 2);
          const top = Math.round(vy(c.v));
          ctx.rect(xx, top, bw, Math.max(1, paneBottom - top));
        }
        ctx.fill();
      }

      // candles: wicks then bodies, one path per colour
      for (const up of [true, false]) {
        const col = up ? C.up : C.down;
        ctx.strokeStyle = col;
        ctx.fillStyle = col;
        ctx.beginPath();
        for (let i = i0; i <= i1; i++) {
          const c = a[i];
          if ((c.c >= c.o) !== up) continue;
          const xx = Math.round(x(i)) + 0.5;
          ctx.moveTo(xx, Math.round(y(c.h))); ctx.lineTo(xx, Math.round(y(c.l)));
        }
        ctx.stroke();
        ctx.beginPath();
        for (let i = i0; i <= i1; i++) {
          const c = a[i];
          if ((c.c >= c.o) !== up) continue;
          const top = Math.round(y(Math.max(c.o, c.c)));
          const bot = Math.round(y(Math.min(c.o, c.c)));
          ctx.rect(Math.round(x(i) - bw / 2), top, bw, Math.max(1, bot - top));
          const xx = x(i);
          if (xx >= 0 && xx <= plotW) drawn++;
        }
        ctx.fill();
      }

      // SMA10
      ctx.strokeStyle = C.sma;
      ctx.lineWidth = 1.6;
      ctx.lineJoin = 'round';
      ctx.beginPath();
      let pen = false;
      for (let i = i0; i <= i1; i++) {
        const s = a[i].sma;
        if (s == null) { pen = false; continue; }
        const xx = x(i), yy = y(s);
        if (pen) ctx.lineTo(xx, yy); else ctx.moveTo(xx, yy);
        pen = true;
        if (xx >= 0 && xx <= plotW) smaPoints++;
      }
      ctx.stroke();
      ctx.lineWidth = 1;

      // last price line
      const last = a[n - 1];
      const lastUp = last.c >= last.o;
      const ly = Math.round(y(last.c)) + 0.5;
      ctx.setLineDash([2, 3]);
      ctx.strokeStyle = lastUp ? C.up : C.down;
      ctx.beginPath(); ctx.moveTo(0, ly); ctx.lineTo(plotW, ly); ctx.stroke();
      ctx.setLineDash([]);
      ctx.restore();

      axisLabel(ly, fmtPrice(last.c), lastUp ? C.up : C.down, '#fff', plotW);

      // the volume scale, in the axis column beside the volume pane
      ctx.fillStyle = C.axis;
      ctx.textAlign = 'left';
      for (const v of volTicks) ctx.fillText(fmtVol(v), plotW + 8, Math.round(vy(v)) + 0.5);
      ctx.fillStyle = C.faint;
      ctx.fillText('vol', plotW + 8, paneBottom - 8);

      // crosshair
      const hv = S.hover;
      let hi_ = null;
      if (hv && hv.x < plotW && hv.y < paneBottom) {
        const idx = Math.round(idxAt(hv.x));
        if (idx >= 0 && idx < n) hi_ = idx;
        const cx = hi_ != null ? Math.round(x(hi_)) + 0.5 : hv.x;
        ctx.strokeStyle = C.cross;
        ctx.setLineDash([4, 4]);
        ctx.beginPath();
        ctx.moveTo(cx, TOP); ctx.lineTo(cx, paneBottom);
        ctx.moveTo(0, Math.round(hv.y) + 0.5); ctx.lineTo(plotW, Math.round(hv.y) + 0.5);
        ctx.stroke();
        ctx.setLineDash([]);
        if (hv.y <= priceBottom) axisLabel(Math.round(hv.y) + 0.5, nf(dec).format(pFromY(hv.y)), C.label, C.text, plotW);
        if (hi_ != null) {
          const label = fmtDateTime(a[hi_].t);
          ctx.font = '11px ui-monospace, "SF Mono", Menlo, Consolas, monospace';
          const tw = ctx.measureText(label).width + 12;
          const lx = Math.min(Math.max(cx - tw / 2, 0), plotW - tw);
          ctx.fillStyle = C.label;
          ctx.fillRect(lx, paneBottom + 2, tw, TIME_H - 4);
          ctx.fillStyle = C.text;
          ctx.textAlign = 'center';
          ctx.fillText(label, lx + tw / 2, paneBottom + TIME_H / 2);
        }
      }
      renderOhlc(hi_ != null ? hi_ : n - 1);
    } else {
      el.ohlc.innerHTML = '&nbsp;';
    }

    // axis separators
    ctx.strokeStyle = '#232a36';
    ctx.beginPath();
    ctx.moveTo(plotW + 0.5, 0); ctx.lineTo(plotW + 0.5, H);
    ctx.moveTo(0, paneBottom + 0.5); ctx.lineTo(W, paneBottom + 0.5);
    ctx.stroke();

    const newest = n ? a[n - 1] : null;
    renderSmaLegend();
    publishHook(drawn, smaPoints, newest);
    if (n && idxAt(0) < 30) loadOlder();
  }

  function axisLabel(yy, text, bg, fg, plotW) {
    ctx.font = '11px ui-monospace, "SF Mono", Menlo, Consolas, monospace';
    ctx.fillStyle = bg;
    ctx.fillRect(plotW + 1, yy - 9, AXIS_W - 1, 18);
    ctx.fillStyle = fg;
    ctx.textAlign = 'left';
    ctx.fillText(text, plotW + 8, yy);
  }

  // SMA10 is missing until 10 candles of the interval exist: say so, and how many there are.
  function smaWaiting(i) { // candles so far when candle i has no SMA10 yet, else null
    const c = S.candles[i];
    return c && c.sma == null ? Math.min(i + 1, SMA_N - 1) : null;
  }
  function smaHint(have) { return `needs ${SMA_N} ${IV_WORDS[S.interval]} candles, ${have} so far`; }
  function renderSmaLegend() {
    const have = smaWaiting(S.candles.length - 1);
    const text = have == null ? '' : smaHint(have);
    if (el.smaWait.textContent === text) return;
    el.smaWait.textContent = text;
    el.smaWait.hidden = !text;
    el.smaLegend.title = 'SMA10: the mean close of the last ' + SMA_N + ' candles' + (text ? '; ' + text : '');
  }

  function renderOhlc(i) {
    const c = S.candles[i];
    if (!c) return;
    const have = smaWaiting(i);
    const prev = S.candles[i - 1];
    const chg = prev ? ((c.c - prev.c) / prev.c) * 100 : ((c.c - c.o) / c.o) * 100;
    const ref = c.c;
    const cls = dirClass(c.c - c.o);
    el.ohlc.innerHTML =
      `<b>${fmtDateTime(c.t)}</b>O <b class="${cls}">${fmtPrice(c.o, ref)}</b>H <b class="${cls}">${fmtPrice(c.h, ref)}</b>` +
      `L <b class="${cls}">${fmtPrice(c.l, ref)}</b>C <b class="${cls}">${fmtPrice(c.c, ref)}</b>` +
      `<b class="${dirClass(chg)}">${fmtPct(chg)}</b>V <b>${fmtVol(c.v)}</b>` +
      `SMA10 <b style="color:${C.sma}">${c.sma != null ? fmtPrice(c.sma, ref) : '—'}</b>` +
      (have != null ? `<span class="sma-wait" title="SMA10 ${smaHint(have)}">(${have}/${SMA_N} candles)</span>` : '');
  }

  let hook = { candles: 0, smaPoints: 0, lastClose: null, lastBucket: null };
  function publishHook(drawn, smaPoints, newest) {
    if (drawn !== undefined) {
      hook = { candles: drawn, smaPoints, lastClose: newest ? newest.c : null, lastBucket: newest ? newest.t : null };
    }
    window.__candlewick = {
      candles: hook.candles, smaPoints: hook.smaPoints, lastClose: hook.lastClose, lastBucket: hook.lastBucket,
      state: S.conn, symbol: S.symbol, interval: S.interval, total: S.candles.length,
      spacing: S.view.spacing, offset: S.view.offset, resyncs: S.resyncs, refills: S.refills,
    };
  }

  // ---------------------------------------------------------------- interaction
  const pointers = new Map();
  let drag = null, pinch = null;
  function localXY(ev) {
    const r = el.canvas.getBoundingClientRect();
    return { x: ev.clientX - r.left, y: ev.clientY - r.top };
  }
  function zoomAt(px, factor) {
    const g = geom();
    const fi = g.idxAt(px);
    S.view.spacing = Math.max(1, Math.min(60, S.view.spacing * factor));
    // following live: the newest candle stays put; panned back: keep candle `fi` under the pointer
    if (S.view.offset > 0.5) S.view.offset += geom().idxAt(px) - fi;
    schedule(true);
  }
  function resetView() { S.view.offset = 0; S.view.spacing = S.view.home || 9; schedule(true); }

  el.canvas.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const { x } = localXY(ev);
    if (Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) { // trackpad horizontal swipe pans
      S.view.offset -= ev.deltaX / S.view.spacing;
      schedule(true);
      return;
    }
    const dy = ev.deltaMode === 1 ? ev.deltaY * 16 : ev.deltaY;
    zoomAt(Math.min(x, W - AXIS_W), Math.exp(-dy * 0.0015));
  }, { passive: false });

  el.canvas.addEventListener('pointerdown', (ev) => {
    el.canvas.setPointerCapture(ev.pointerId);
    pointers.set(ev.pointerId, localXY(ev));
    if (pointers.size === 1) {
      drag = { x: localXY(ev).x, offset: S.view.offset };
      el.canvas.classList.add('dragging');
    } else if (pointers.size === 2) {
      const [p1, p2] = [...pointers.values()];
      drag = null;
      pinch = { d: Math.abs(p1.x - p2.x) || 1, mid: (p1.x + p2.x) / 2 };
    }
  });
  el.canvas.addEventListener('pointermove', (ev) => {
    const p = localXY(ev);
    if (pointers.has(ev.pointerId)) pointers.set(ev.pointerId, p);
    if (pinch && pointers.size === 2) {
      const [p1, p2] = [...pointers.values()];
      const d = Math.abs(p1.x - p2.x) || 1;
      zoomAt(pinch.mid, d / pinch.d);
      pinch.d = d;
      return;
    }
    if (drag) {
      S.view.offset = drag.offset + (p.x - drag.x) / S.view.spacing;
      S.hover = ev.pointerType === 'mouse' ? p : null;
      schedule(true);
      return;
    }
    if (ev.pointerType === 'mouse') { S.hover = p; schedule(true); }
  });
  const endPointer = (ev) => {
    pointers.delete(ev.pointerId);
    if (pointers.size < 2) pinch = null;
    if (!pointers.size) { drag = null; el.canvas.classList.remove('dragging'); }
  };
  el.canvas.addEventListener('pointerup', endPointer);
  el.canvas.addEventListener('pointercancel', endPointer);
  el.canvas.addEventListener('pointerleave', (ev) => { if (!drag) { S.hover = null; schedule(true); } });
  el.canvas.addEventListener('dblclick', resetView);
  window.addEventListener('keydown', (ev) => {
    if (ev.target.closest && ev.target.closest('input')) return;
    if (ev.key === '+' || ev.key === '=') zoomAt(W - AXIS_W - 1, 1.25);
    else if (ev.key === '-') zoomAt(W - AXIS_W - 1, 0.8);
    else if (ev.key === 'ArrowLeft' && !ev.target.closest('li')) { S.view.offset += 5; schedule(true); }
    else if (ev.key === 'ArrowRight' && !ev.target.closest('li')) { S.view.offset -= 5; schedule(true); }
    else if (ev.key === 'Home' || ev.key === 'End') resetView();
  });

  new ResizeObserver(resize).observe(el.wrap);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) { schedule(true); pollDetails(); } });

  // ---------------------------------------------------------------- start
  syncIntervalButtons();
  resize();
  setConn('connecting');
  const wanted = params.get('symbol');
  if (wanted) select(wanted);
  loadSymbols();
  connect();
  pollHealth();
  setInterval(() => { if (!document.hidden) pollDetails(); }, POLL_MS);
  setInterval(() => { if (!document.hidden) pollHealth(); }, HEALTH_MS);
  setInterval(() => { if (!document.hidden) loadSymbols(); }, SYMBOLS_MS);
})();
