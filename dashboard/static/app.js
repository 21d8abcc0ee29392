// Penstock dashboard: reads /api/v1 every two seconds and draws the
// overview (totals, throughput, queued by status, sites, deliveries) or one
// site's detail (#site=<key>). Plain DOM and SVG, no framework; every text
// from the API goes through textContent, never innerHTML, because reply
// texts come from remote servers.
'use strict';
(function () {
  const REFRESH_MS = 2000;
  const DELIVERIES_RETRY_MS = 30000; // after a 404: the node has no deliveries API
  const DETAIL_MAX_AGE_MS = 10000;   // per-site detail (recent replies) for the table
  const DETAIL_MAX_FETCH = 20;       // at most this many detail requests per refresh
  const ADVICE_MAX_AGE_MS = 60000;   // the advisor reads the delivery log: once a minute is plenty
  const ADVICE_SINCE = '7d';
  const SITE_ROWS = 50;
  const TOKEN_KEY = 'penstock.token';
  const SVGNS = 'http://www.w3.org/2000/svg';
  const STATES = ['normal', 'backoff', 'suspended'];

  const st = {
    token: '',
    timer: 0,
    busy: false,
    again: false,
    waitingForToken: false,
    deliveriesMissingUntil: 0,
    deliveries: null,
    details: new Map(), // site key -> {at: ms, view: SiteView}
    advice: null,       // {recs, error}: the advisor's last answer
    adviceAt: 0,
    showAllSites: false,
    overview: null,     // last overview data, for re-filtering without a fetch
    drawn: {},          // section -> key of what it shows, to skip identical redraws
  };

  // ---------- small helpers ----------

  const $ = (id) => document.getElementById(id);

  function setAttrs(e, attrs) {
    if (!attrs) return;
    for (const k of Object.keys(attrs)) {
      const v = attrs[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function append(e, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === undefined || k === null || k === false) continue;
      e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    return append(e, kids);
  }
  function sv(tag, attrs, ...kids) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    return append(e, kids);
  }
  function replace(node, ...kids) {
    node.replaceChildren();
    append(node, kids);
  }

  const nf = new Intl.NumberFormat('en-US');
  function fmtInt(n) { return nf.format(Number(n) || 0); }
  function fmtCompact(n) {
    n = Number(n) || 0;
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(n % 1e6 === 0 ? 0 : 1) + 'M';
    if (Math.abs(n) >= 1e4) return Math.round(n / 1e3) + 'k';
    if (Math.abs(n) >= 1e3) return (n / 1e3).toFixed(n % 1e3 === 0 ? 0 : 1) + 'k';
    return String(n);
  }
  function fmtPct(x) {
    if (!isFinite(x)) return '—';
    const p = x * 100;
    return (p >= 10 || p === 0 ? p.toFixed(0) : p.toFixed(1)) + '%';
  }
  // num is a number the tests read: a stable data-testid and the raw value.
  function num(testid, value, text) {
    const v = Number(value) || 0;
    return el('span', { 'data-testid': testid, 'data-value': v, class: 'num' }, text === undefined ? fmtInt(v) : text);
  }

  // Go encodes a zero time.Time as 0001-01-01T00:00:00Z: treat it as absent.
  function parseTime(s) {
    if (!s) return null;
    const d = new Date(s);
    if (isNaN(d.getTime()) || d.getUTCFullYear() < 2000) return null;
    return d;
  }
  const pad = (n) => String(n).padStart(2, '0');
  function fmtClock(d, secs) {
    if (!d) return '—';
    const s = pad(d.getHours()) + ':' + pad(d.getMinutes());
    return secs === false ? s : s + ':' + pad(d.getSeconds());
  }
  function fmtDateTime(d) {
    if (!d) return '—';
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    return (sameDay ? '' : d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ') + fmtClock(d);
  }
  function fmtDur(ms) {
    ms = Math.abs(ms);
    const s = Math.round(ms / 1000);
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min' + (s % 60 && m < 10 ? ' ' + (s % 60) + ' s' : '');
    const h = Math.floor(m / 60);
    if (h < 48) return h + ' h' + (m % 60 ? ' ' + (m % 60) + ' min' : '');
    return Math.floor(h / 24) + ' d';
  }
  function fmtRel(d) {
    if (!d) return '';
    const ms = d.getTime() - Date.now();
    if (Math.abs(ms) < 1000) return 'now';
    return ms < 0 ? fmtDur(ms) + ' ago' : 'in ' + fmtDur(ms);
  }
  function timeWithRel(d) {
    if (!d) return '—';
    return el('span', { title: d.toString() }, fmtDateTime(d), el('span', { class: 'muted' }, ' (' + fmtRel(d) + ')'));
  }

  function shortSite(key) {
    const hosts = String(key || '').split(',').filter(Boolean);
    if (hosts.length === 0) return key || '—';
    const shortest = hosts.reduce((a, b) => (b.length < a.length ? b : a));
    return hosts.length > 1 ? shortest + ' +' + (hosts.length - 1) : shortest;
  }
  // breakable lets a long host name wrap after its dots, not mid-label.
  function breakable(name) {
    const parts = String(name).split('.');
    return parts.map((p, i) => (i < parts.length - 1 ? [p + '.', el('wbr')] : p));
  }
  function shortStatus(s) {
    const m = /^Messages queued \((.*)\)$/.exec(s || '');
    return m ? m[1] : s || '';
  }
  function statusClass(s) {
    s = s || '';
    if (s.includes('dynamic flow control')) return 'st-flow';
    if (s.includes('suspended')) return 'st-suspended';
    if (s.includes('retry')) return 'st-retry';
    if (s.includes('quota') || s.includes('cap met') || s.includes('rate met')) return 'st-quota';
    if (s.includes('MX')) return 'st-mx';
    if (s.includes('in delivery')) return 'st-inflight';
    return '';
  }
  function stateClass(state) { return STATES.includes(state) ? state : 'neutral'; }
  function statePill(state, testid) {
    return el('span', { class: 'pill pill-' + stateClass(state), 'data-testid': testid, 'data-value': state || '' }, state || '—');
  }
  function codePill(code) {
    const c = Number(code) || 0;
    const cls = c >= 500 ? 5 : c >= 400 ? 4 : c >= 200 && c < 300 ? 2 : 0;
    return el('span', { class: 'code code-' + cls }, c ? String(c) : 'local');
  }
  function replyLine(r) {
    return [r.enhanced, r.text].filter(Boolean).join(' ');
  }
  function siteHref(key) { return '#site=' + encodeURIComponent(key); }
  function setWidth(node, frac) {
    // CSSOM, not a style attribute: the page's CSP forbids the latter.
    node.style.width = Math.max(0, Math.min(1, frac)) * 100 + '%';
    return node;
  }
  // drawn reports whether a section already shows exactly this data.
  function unchanged(section, data) {
    const key = JSON.stringify(data);
    if (st.drawn[section] === key) return true;
    st.drawn[section] = key;
    return false;
  }

  // ---------- API ----------

  class HTTPError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  async function api(path) {
    const headers = { Accept: 'application/json' };
    if (st.token) headers.Authorization = 'Bearer ' + st.token;
    let r;
    try {
      r = await fetch('api/v1/' + path, { headers, cache: 'no-store' });
    } catch (e) {
      throw new HTTPError(0, 'cannot reach the node (' + e.message + ')');
    }
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try {
        const body = await r.json();
        if (body && body.error) msg = body.error;
      } catch (e) { /* not JSON: keep the status line */ }
      throw new HTTPError(r.status, msg);
    }
    return r.json();
  }
  // optional turns a 404 into null: a route or a site that does not exist.
  function optional(p) {
    return p.catch((e) => {
      if (e.status === 404) return null;
      throw e;
    });
  }

  // ---------- routing and the token ----------

  function loadToken() {
    try { st.token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { st.token = ''; }
  }
  function saveToken(t) {
    st.token = t;
    try { sessionStorage.setItem(TOKEN_KEY, t); } catch (e) { /* private mode: keep it in memory */ }
  }

  // route reads the URL fragment: "#site=<key>" is a site's page, "#token=..."
  // is taken and removed from the address bar, a bare word is an anchor.
  function route() {
    const raw = location.hash.replace(/^#/, '');
    const p = new URLSearchParams(raw);
    if (p.has('token')) {
      saveToken(p.get('token'));
      p.delete('token');
      const rest = p.toString();
      history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    }
    const site = p.get('site');
    return { site: site || null, anchor: !site && raw && !raw.includes('=') ? raw : '' };
  }

  function needToken(msg) {
    st.waitingForToken = true;
    const f = $('token-form');
    f.hidden = false;
    setLive(false, msg);
    $('token-input').focus();
  }

  // ---------- the refresh loop ----------

  function schedule() {
    clearTimeout(st.timer);
    if (!document.hidden && !st.waitingForToken) st.timer = setTimeout(tick, REFRESH_MS);
  }

  async function tick() {
    clearTimeout(st.timer);
    if (st.busy) { st.again = true; return; }
    st.busy = true;
    try {
      const r = route();
      if (r.site) await showSite(r.site);
      else await showOverview(r.anchor);
      setLive(true);
      showError('');
      document.body.setAttribute('data-loaded', '1');
    } catch (e) {
      if (e.status === 401) {
        needToken(e.message);
      } else {
        setLive(false, e.message);
        showError(e.message);
      }
    } finally {
      st.busy = false;
    }
    if (st.again) {
      st.again = false;
      tick();
      return;
    }
    schedule();
  }

  function setLive(ok, msg) {
    const live = $('live');
    live.classList.toggle('ok', ok);
    live.classList.toggle('bad', !ok);
    $('live-text').textContent = ok ? 'live · updated ' + fmtClock(new Date()) : 'disconnected · ' + (msg || 'retrying');
  }
  function showError(msg) {
    const e = $('error');
    e.hidden = !msg;
    e.textContent = msg ? 'Cannot refresh: ' + msg + '. Retrying every 2 s; the figures below may be stale.' : '';
  }
  function renderLocal(status) {
    const on = !!(status && status.local_problem);
    const b = $('local-problem');
    b.hidden = !on;
    b.setAttribute('data-value', String(on));
    $('local-problem-detail').textContent = on ? status.local_problem_detail || '' : '';
  }

  function showView(name) {
    $('view-overview').hidden = name !== 'overview';
    $('view-site').hidden = name !== 'site';
    document.body.setAttribute('data-view', name);
    for (const a of document.querySelectorAll('#nav a')) {
      const cur = name === 'overview' ? a.dataset.nav === 'overview' : a.dataset.nav === 'sites';
      if (cur) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  // ---------- overview ----------

  async function showOverview(anchor) {
    const wasHidden = $('view-overview').hidden;
    showView('overview');
    if (wasHidden) document.title = 'Penstock';
    const wantDeliveries = Date.now() >= st.deliveriesMissingUntil;
    const [status, timeline, queues, deliveries] = await Promise.all([
      api('status'),
      api('timeline?minutes=60'),
      api('queues'),
      wantDeliveries ? fetchDeliveries() : Promise.resolve(st.deliveries),
    ]);
    st.overview = { status, timeline, queues };
    st.deliveries = deliveries;
    const sites = queues.sites || [];
    renderLocal(status);
    renderTotals(status.totals || {}, sites, timeline.minutes || []);
    renderThroughput(timeline.minutes || []);
    renderByStatus(sites, (status.totals || {}).queued || 0);
    await fetchDetails(visibleSites(sites));
    renderSites(sites);
    renderDeliveries(deliveries);
    renderDKIM(await fetchDKIM());
    renderAdvice(await fetchAdvice());
    renderTLS(await fetchTLS());
    renderWarmup(await fetchWarmup());
    if (wasHidden && anchor) {
      const target = document.getElementById(anchor);
      if (target) target.scrollIntoView();
    }
  }

  // fetchDeliveries returns {deliveries: [...]}, or {missing: true} when the
  // node has no deliveries API (404), or {error} for any other failure, so
  // one missing feature never blanks the page.
  async function fetchDeliveries() {
    try {
      const d = await api('deliveries');
      return { list: (d && d.deliveries) || [] };
    } catch (e) {
      if (e.status === 401) throw e;
      if (e.status === 404) {
        st.deliveriesMissingUntil = Date.now() + DELIVERIES_RETRY_MS;
        return { list: [], missing: true };
      }
      return { list: [], error: e.message };
    }
  }

  function card(label, testid, value, accent, sub) {
    return el('div', { class: 'card accent-' + accent },
      el('div', { class: 'card-label' }, label),
      el('div', { class: 'card-value' }, num(testid, value)),
      el('div', { class: 'card-sub' }, sub || ''));
  }

  function sumMinutes(minutes, field) {
    return minutes.reduce((a, m) => a + (Number(m[field]) || 0), 0);
  }

  function renderTotals(t, sites, minutes) {
    const inFlight = sites.reduce((a, s) => a + (s.in_flight || 0), 0);
    const finished = (t.delivered || 0) + (t.bounced || 0);
    const hourDelivered = sumMinutes(minutes, 'delivered');
    const data = [t, inFlight, hourDelivered, sites.length];
    if (unchanged('totals', data)) return;
    replace($('totals'),
      card('Queued', 'total-queued', t.queued, 'queued', fmtInt(inFlight) + ' in delivery now'),
      card('Delivered', 'total-delivered', t.delivered, 'delivered', fmtInt(hourDelivered) + ' in the last hour'),
      card('Bounced', 'total-bounced', t.bounced, 'bounced', finished ? fmtPct((t.bounced || 0) / finished) + ' of finished' : ''),
      card('Deferred', 'total-deferred', t.deferred, 'deferred', 'temporary failures'),
      card('Expired', 'total-expired', t.expired, 'expired', 'validity period over'),
      card('Suppressed', 'total-suppressed', t.suppressed, 'suppressed', 'quarantined'),
      card('Sites with mail', 'total-sites', t.sites, 'sites', fmtInt(sites.length) + ' known'));
  }

  // niceCeil rounds up to 1, 2 or 5 × 10^k, for axis ticks.
  function niceStep(max, ticks) {
    const raw = Math.max(max, 1) / ticks;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    const step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
    return Math.max(1, step);
  }

  function chartWidth(node, min) {
    return Math.max(min, Math.floor(node.getBoundingClientRect().width) || min);
  }

  function renderThroughput(minutes) {
    const box = $('throughput');
    const W = chartWidth(box, 360);
    const hour = {
      delivered: sumMinutes(minutes, 'delivered'),
      deferred: sumMinutes(minutes, 'deferred'),
      bounced: sumMinutes(minutes, 'bounced'),
      received: sumMinutes(minutes, 'received'),
    };
    if (unchanged('throughput', [minutes, W])) return;
    replace($('throughput-legend'),
      el('span', null, el('i', { class: 'sw sw-delivered' }), 'delivered ', num('hour-delivered', hour.delivered)),
      el('span', null, el('i', { class: 'sw sw-deferred' }), 'deferred ', num('hour-deferred', hour.deferred)),
      el('span', null, el('i', { class: 'sw sw-bounced' }), 'bounced ', num('hour-bounced', hour.bounced)),
      el('span', null, el('i', { class: 'sw sw-received' }), 'received ', num('hour-received', hour.received)));

    const H = 230, ml = 46, mr = 10, mt = 10, mb = 26;
    const pw = W - ml - mr, ph = H - mt - mb;
    const n = Math.max(minutes.length, 1);
    let max = 0;
    for (const m of minutes) max = Math.max(max, (m.delivered || 0) + (m.deferred || 0) + (m.bounced || 0), m.received || 0);
    const step = niceStep(max, 4);
    const top = Math.max(step, Math.ceil(max / step) * step);
    const y = (v) => mt + ph - (v / top) * ph;
    const bw = pw / n;
    const g = [];
    for (let v = 0; v <= top + 1e-9; v += step) {
      g.push(sv('line', { class: 'grid', x1: ml, x2: W - mr, y1: y(v), y2: y(v) }));
      g.push(sv('text', { x: ml - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmtCompact(v)));
    }
    const bars = [];
    const recv = [];
    const hits = [];
    minutes.forEach((m, i) => {
      const x = ml + i * bw;
      const gap = bw > 6 ? 1.5 : bw > 3 ? 0.5 : 0;
      let base = 0;
      for (const k of ['delivered', 'deferred', 'bounced']) {
        const v = m[k] || 0;
        if (v > 0) {
          const y0 = y(base), y1 = y(base + v);
          bars.push(sv('rect', { class: 'bar-' + k, x: x + gap / 2, y: y1, width: Math.max(bw - gap, 0.5), height: Math.max(y0 - y1, 1) }));
        }
        base += v;
      }
      if (m.received > 0) recv.push(sv('line', { class: 'tick-received', x1: x + gap / 2, x2: x + Math.max(bw - gap / 2, gap / 2 + 0.5), y1: y(m.received), y2: y(m.received) }));
      const t = new Date(m.minute * 1000);
      hits.push(sv('rect', { class: 'hit', x, y: mt, width: bw, height: ph },
        sv('title', null, fmtClock(t, false) + ' — delivered ' + fmtInt(m.delivered) + ', deferred ' + fmtInt(m.deferred) +
          ', bounced ' + fmtInt(m.bounced) + ', received ' + fmtInt(m.received) +
          (m.expired ? ', expired ' + fmtInt(m.expired) : '') + (m.suppressed ? ', suppressed ' + fmtInt(m.suppressed) : ''))));
      const last = i === minutes.length - 1;
      // Round ten minutes, and "now" at the end; a label too close to
      // "now" would collide with it.
      if (last || (t.getMinutes() % 10 === 0 && (minutes.length - 1 - i) * bw > 48)) {
        g.push(sv('line', { class: 'axis', x1: x + bw / 2, x2: x + bw / 2, y1: mt + ph, y2: mt + ph + 4 }));
        g.push(sv('text', { x: last ? x + bw : x + bw / 2, y: H - 6, 'text-anchor': last ? 'end' : 'middle' }, last ? 'now' : fmtClock(t, false)));
      }
    });
    const kids = [g, bars, recv, hits];
    kids.push(sv('line', { class: 'axis', x1: ml, x2: W - mr, y1: mt + ph, y2: mt + ph }));
    if (max === 0) kids.push(sv('text', { x: ml + pw / 2, y: mt + ph / 2, 'text-anchor': 'middle' }, 'No traffic in the last hour'));
    const label = 'Throughput over the last hour: ' + fmtInt(hour.delivered) + ' delivered, ' + fmtInt(hour.deferred) +
      ' deferred, ' + fmtInt(hour.bounced) + ' bounced, ' + fmtInt(hour.received) + ' received.';
    replace(box, sv('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-label': label, 'data-testid': 'throughput-chart' }, kids));
  }

  function statusList(counts, total, testid) {
    const rows = Object.keys(counts).map((k) => [k, counts[k]]).filter((r) => r[1] > 0)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    if (rows.length === 0) return null;
    const denom = Math.max(total, rows.reduce((a, r) => a + r[1], 0), 1);
    return el('ul', { class: 'status-list' }, rows.map(([s, n]) =>
      el('li', { 'data-testid': testid, 'data-status': s, 'data-value': n },
        el('div', { class: 'status-row' }, el('span', { class: 'status-name' }, s), el('span', { class: 'num' }, fmtInt(n))),
        el('div', { class: 'hbar', 'aria-hidden': 'true' }, setWidth(el('span', { class: statusClass(s) }), n / denom)))));
  }

  function renderByStatus(sites, totalQueued) {
    const counts = {};
    for (const s of sites) {
      const bs = s.by_status || {};
      for (const k of Object.keys(bs)) counts[k] = (counts[k] || 0) + bs[k];
    }
    const sum = Object.keys(counts).reduce((a, k) => a + counts[k], 0);
    if (unchanged('bystatus', [counts, totalQueued])) return;
    const list = statusList(counts, sum, 'status-count');
    replace($('by-status'),
      list || el('p', { class: 'empty', 'data-testid': 'status-empty' }, 'Nothing queued: every accepted recipient is delivered or final.'),
      el('div', { class: 'status-row muted' }, el('span', null, 'Recipients queued at sites'), num('status-total', sum)),
      totalQueued > sum ? el('div', { class: 'status-row muted' }, el('span', null, 'Not yet at a site (awaiting an MX answer)'), el('span', { class: 'num' }, fmtInt(totalQueued - sum))) : null);
  }

  // ---------- sites ----------

  function filterSites(sites) {
    const q = $('site-filter').value.trim().toLowerCase();
    if (!q) return sites;
    return sites.filter((s) => [s.site, s.rule && s.rule.name, s.flow && s.flow.state, s.wait && s.wait.status]
      .some((v) => String(v || '').toLowerCase().includes(q)));
  }
  function visibleSites(sites) {
    const f = filterSites(sites);
    return st.showAllSites ? f : f.slice(0, SITE_ROWS);
  }

  // fetchDetails keeps recent replies for the visible sites: the list
  // route leaves them out, so each site's detail is read at most every
  // DETAIL_MAX_AGE_MS, DETAIL_MAX_FETCH at a time.
  async function fetchDetails(sites) {
    const now = Date.now();
    const stale = sites.filter((s) => {
      const d = st.details.get(s.site);
      return !d || now - d.at > DETAIL_MAX_AGE_MS;
    }).slice(0, DETAIL_MAX_FETCH);
    await Promise.all(stale.map((s) => optional(api('queues/' + encodeURIComponent(s.site)))
      .then((v) => { st.details.set(s.site, { at: Date.now(), view: v }); })
      .catch((e) => { if (e.status === 401) throw e; })));
    if (st.details.size > 500) {
      const keep = new Set(sites.map((s) => s.site));
      for (const k of st.details.keys()) if (!keep.has(k)) st.details.delete(k);
    }
  }

  function topReply(replies) {
    if (!replies || replies.length === 0) return null;
    const groups = new Map();
    replies.forEach((r, i) => {
      const k = (r.code || 0) + '|' + (r.enhanced || '') + '|' + (r.text || '');
      const g = groups.get(k) || { r, n: 0, last: -1 };
      g.n++;
      g.last = i;
      g.r = r;
      groups.set(k, g);
    });
    let best = null;
    for (const g of groups.values()) if (!best || g.n > best.n || (g.n === best.n && g.last > best.last)) best = g;
    return best;
  }

  function connMeter(s) {
    const max = (s.rule && s.rule.max_connections) || 0;
    const f = s.flow && s.flow.connections_factor;
    const cap = max && f && f < 1 ? Math.max(1, Math.floor(max * f)) : max;
    const bar = el('span');
    if (cap) setWidth(bar, s.connections / cap);
    if (cap && s.connections >= cap) bar.classList.add('full');
    return el('div', { class: 'meter', title: max ? s.connections + ' of ' + max + ' connections' + (cap !== max ? ', cut to ' + cap + ' by flow control' : '') : '' },
      el('div', { class: 'hbar', 'aria-hidden': 'true' }, bar),
      el('span', { class: 'num' }, num('site-connections', s.connections), ' / ', max ? fmtInt(max) : (s.rule && s.rule.name ? '∞' : '—'),
        cap !== max ? el('span', { class: 'muted' }, ' (' + cap + ')') : ''));
  }

  function renderSites(sites) {
    const shown = visibleSites(sites);
    const filtered = filterSites(sites);
    const replies = shown.map((s) => {
      const d = st.details.get(s.site);
      return d ? (d.view ? d.view.recent_replies || [] : []) : null;
    });
    if (unchanged('sites', [shown, replies, filtered.length, sites.length])) return;
    const withMail = sites.filter((s) => s.queued > 0).length;
    replace($('sites-summary'), '· ', num('sites-count', sites.length), ' known, ', fmtInt(withMail), ' with mail');
    if (sites.length === 0) {
      replace($('sites-table'), el('p', { class: 'empty', 'data-testid': 'sites-empty' }, 'No sites yet: sites appear once mail to a domain has its MX answer.'));
      return;
    }
    const rows = shown.map((s, i) => {
      const top = replies[i] === null ? undefined : topReply(replies[i]);
      const rule = s.rule || {};
      const flow = s.flow || {};
      const wait = s.wait;
      const href = siteHref(s.site);
      return el('tr', { class: 'clickable', 'data-testid': 'site-row', 'data-site': s.site, onclick: (ev) => {
        if (ev.target.closest('a')) return;
        location.hash = href.slice(1);
      } },
      el('td', { class: 'site' },
        el('a', { class: 'site-name', href, title: s.site }, breakable(shortSite(s.site))),
        el('div', { class: 'site-key' }, (s.mx_hosts || []).length + ' MX')),
      el('td', { class: 'nw' }, el('span', { title: rule.why || '' }, rule.name || '—'), el('div', { class: 'site-key' }, rule.scope || '')),
      el('td', { class: 'nw' }, connMeter(s)),
      el('td', { class: 'waiting' }, wait ? el('span', { title: wait.detail || '' }, shortStatus(wait.status)) :
        s.in_flight > 0 ? el('span', { class: 'muted' }, 'in delivery') : el('span', { class: 'muted' }, '—')),
      el('td', { class: 'nw' }, statePill(flow.state, 'site-flow'), s.suspended_by_operator ? [' ', el('span', { class: 'pill pill-suspended' }, 'operator')] : null),
      el('td', { class: 'num' }, num('site-queued', s.queued)),
      el('td', { class: 'num' }, num('site-delivered-hour', s.delivered_last_hour)),
      el('td', { class: 'num' }, num('site-bounced', s.bounced)),
      el('td', { class: 'reply' }, top === undefined ? el('span', { class: 'muted' }, '…') :
        top === null ? el('span', { class: 'muted', title: 'no error reply recorded recently' }, '—') :
          el('span', { class: 'clip', title: (top.r.code || '') + ' ' + replyLine(top.r) + (top.r.mx_host ? ' — ' + top.r.mx_host : '') },
            codePill(top.r.code), replyLine(top.r), top.n > 1 ? el('span', { class: 'muted' }, ' ×' + top.n) : '')));
    });
    const head = el('thead', null, el('tr', null,
      el('th', { scope: 'col' }, 'Site'), el('th', { scope: 'col' }, 'Rule'), el('th', { scope: 'col' }, 'Connections'),
      el('th', { scope: 'col' }, 'Waiting'), el('th', { scope: 'col' }, 'Flow'), el('th', { scope: 'col', class: 'num' }, 'Queued'),
      el('th', { scope: 'col', class: 'num' }, 'Delivered (1 h)'), el('th', { scope: 'col', class: 'num' }, 'Bounced'),
      el('th', { scope: 'col' }, 'Top reply')));
    const more = filtered.length > shown.length ?
      el('div', { class: 'more-row' }, el('button', { type: 'button', onclick: () => { st.showAllSites = true; redrawSites(); } },
        'Show all ' + fmtInt(filtered.length) + ' sites')) : null;
    replace($('sites-table'),
      el('table', { class: 'sites', 'data-testid': 'sites-table' }, el('caption', { class: 'visually-hidden' }, 'Sites: queues per set of MX hosts'), head, el('tbody', null, rows)),
      filtered.length === 0 ? el('p', { class: 'empty' }, 'No site matches the filter.') : null,
      more);
  }

  async function redrawSites() {
    if (!st.overview) return;
    const sites = st.overview.queues.sites || [];
    try { await fetchDetails(visibleSites(sites)); } catch (e) { /* the next refresh reports it */ }
    renderSites(sites);
  }

  // ---------- deliveries ----------

  function etaText(eta) {
    if (eta === undefined || eta === null || eta === '' || eta === 0) return '—';
    if (typeof eta === 'number') return 'in ' + fmtDur(eta * 1000);
    const d = parseTime(eta);
    if (d) return d.getTime() <= Date.now() ? 'now' : fmtClock(d, false) + ' (' + fmtRel(d) + ')';
    return String(eta);
  }

  function renderDeliveries(d) {
    if (unchanged('deliveries', d)) return;
    const box = $('deliveries-body');
    const list = (d && d.list) || [];
    if (list.length === 0) {
      replace(box, el('p', { class: 'empty', 'data-testid': 'deliveries-empty', 'data-value': 0 },
        'No deliveries.', d && d.error ? el('span', { class: 'banner-hint' }, 'The deliveries API failed: ' + d.error) :
          el('span', { class: 'banner-hint' }, 'Campaigns sent with penstock send or the deliveries API show here with their progress.')));
      return;
    }
    const segs = ['delivered', 'bounced', 'suppressed', 'expired', 'cancelled'];
    // Unfinished first, then the newest.
    const sorted = list.slice().sort((a, b) => (!!a.done - !!b.done) || String(b.created).localeCompare(String(a.created)));
    const rows = sorted.map((x) => {
      const c = x.counts || {};
      const total = Number(x.total) || segs.concat(['queued']).reduce((a, k) => a + (c[k] || 0), 0);
      // Recovered recipients finished before a crash without a known
      // outcome: final, so they count as done.
      const recovered = Number(x.recovered) || 0;
      const done = segs.reduce((a, k) => a + (c[k] || 0), 0) + recovered;
      const frac = total ? done / total : 0;
      const bar = el('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total, 'aria-valuenow': done,
        'aria-label': 'Progress of ' + (x.name || x.id) },
        segs.map((k) => (c[k] ? setWidth(el('span', { class: 'seg-' + k, title: fmtInt(c[k]) + ' ' + k }), total ? c[k] / total : 0) : null)),
        recovered ? setWidth(el('span', { class: 'seg-cancelled', title: fmtInt(recovered) + ' recovered after a restart' }), total ? recovered / total : 0) : null);
      return el('tr', { 'data-testid': 'delivery-row', 'data-id': x.id },
        el('td', null, el('div', { class: 'site-name' }, x.name || x.id), el('div', { class: 'site-key' }, x.id)),
        el('td', { class: 'nowrap' }, fmtDateTime(parseTime(x.created))),
        el('td', null, bar, el('div', { class: 'progress-legend' },
          el('b', null, fmtInt(c.delivered)), ' delivered · ', el('b', null, fmtInt(c.bounced)), ' bounced · ',
          el('b', null, fmtInt(c.queued)), ' queued',
          c.suppressed ? [' · ', el('b', null, fmtInt(c.suppressed)), ' suppressed'] : null,
          c.expired ? [' · ', el('b', null, fmtInt(c.expired)), ' expired'] : null,
          c.cancelled ? [' · ', el('b', null, fmtInt(c.cancelled)), ' cancelled'] : null,
          recovered ? [' · ', el('b', null, fmtInt(recovered)), ' recovered'] : null)),
        el('td', { class: 'num' }, num('delivery-done', done, fmtPct(frac)), el('div', { class: 'site-key' }, fmtInt(done) + ' / ' + fmtInt(total))),
        el('td', { class: 'num' }, x.rate_per_minute ? fmtInt(Math.round(x.rate_per_minute)) + '/min' : '—'),
        el('td', { class: 'num' }, x.done || (done >= total && total > 0) ? el('span', { class: 'pill pill-normal' }, 'done') : etaText(x.eta)));
    });
    replace(box, el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'deliveries-table' },
      el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Delivery'), el('th', { scope: 'col' }, 'Created'),
        el('th', { scope: 'col' }, 'Progress'), el('th', { scope: 'col', class: 'num' }, 'Done'),
        el('th', { scope: 'col', class: 'num' }, 'Rate'), el('th', { scope: 'col', class: 'num' }, 'ETA'))),
      el('tbody', null, rows))));
  }

  // fetchDKIM returns {domains} from /dkim, or {error}: an older node
  // without the route, or a failure, leaves the rest of the page alone.
  async function fetchDKIM() {
    try {
      const d = await api('dkim');
      return { domains: (d && d.domains) || [] };
    } catch (e) {
      if (e.status === 401) throw e;
      return { domains: [], error: e.status === 404 ? 'this node does not report signing' : e.message };
    }
  }

  function dkimCounts(c) {
    c = c || {};
    const unsigned = Object.values(c.unsigned || {}).reduce((a, n) => a + n, 0);
    return fmtInt(c.signed) + ' / ' + fmtInt(c.third_party) + ' / ' + fmtInt(unsigned);
  }

  function renderDKIM(d) {
    if (unchanged('dkim', d)) return;
    const box = $('dkim-body');
    if (d.domains.length === 0) {
      replace(box, el('p', { class: 'empty', 'data-testid': 'dkim-empty' },
        d.error ? 'No signing status: ' + d.error + '.' : 'No mail through the signing stage in the last day.'));
      return;
    }
    const pill = { signed: 'pill-normal', third_party: 'pill-backoff', unsigned: 'pill-suspended', mixed: 'pill-backoff' };
    const rows = d.domains.map((x) => {
      const reasons = Object.entries((x.last_day || {}).unsigned || {}).sort().map(([r, n]) => r + ' ' + fmtInt(n)).join(', ');
      return el('tr', { 'data-testid': 'dkim-row', 'data-domain': x.domain, 'data-status': x.status },
        el('td', null, el('div', { class: 'site-name' }, x.domain), x.signed_by ? el('div', { class: 'site-key' }, x.signed_by) : null),
        el('td', null, el('span', { class: 'pill ' + (pill[x.status] || 'pill-neutral') }, x.status.replace('_', '-'))),
        el('td', { class: 'num' }, dkimCounts(x.last_hour)),
        el('td', { class: 'num' }, dkimCounts(x.last_day)),
        el('td', null, reasons || '—'));
    });
    replace(box, el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'dkim-table' },
      el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'From domain'), el('th', { scope: 'col' }, 'Status'),
        el('th', { scope: 'col', class: 'num' }, 'Last hour'), el('th', { scope: 'col', class: 'num' }, 'Last day'),
        el('th', { scope: 'col' }, 'Unsigned, why (last day)'))),
      el('tbody', null, rows))));
  }

  // fetchTLS returns {domains, hosts} from /tls, or {error}: an older node
  // without the route, or a failure, leaves the rest of the page alone.
  async function fetchTLS() {
    try {
      const d = await api('tls');
      return { domains: (d && d.domains) || [], hosts: (d && d.hosts) || [] };
    } catch (e) {
      if (e.status === 401) throw e;
      return { domains: [], hosts: [], error: e.status === 404 ? 'this node does not report TLS' : e.message };
    }
  }

  function tlsTime(s) {
    const d = parseTime(s);
    return d ? timeWithRel(d) : '—';
  }

  function renderTLS(d) {
    if (unchanged('tls', d)) return;
    const box = $('tls-body');
    if (d.domains.length === 0 && d.hosts.length === 0) {
      replace(box, el('p', { class: 'empty', 'data-testid': 'tls-empty' },
        d.error ? 'No TLS status: ' + d.error + '.' : 'No connection made yet.'));
      return;
    }
    const srcName = { dane: 'DANE', sts: 'MTA-STS', rule: 'MX rule' };
    const modePill = (src, mode) => src !== 'rule' && mode === 'enforce' ? 'pill-normal'
      : mode === 'testing' ? 'pill-info' : 'pill-neutral';
    const domains = d.domains.map((x) => el('tr', { 'data-testid': 'tls-domain-row', 'data-domain': x.domain,
      'data-source': x.source, 'data-mode': x.mode },
    el('td', null, el('div', { class: 'site-name' }, x.domain), x.note ? el('div', { class: 'site-key' }, x.note) : null),
    el('td', null, srcName[x.source] || x.source),
    el('td', null, el('span', { class: 'pill ' + modePill(x.source, x.mode) }, x.mode)),
    el('td', null, (x.mx || []).join(', ') || '—'),
    el('td', null, tlsTime(x.expires))));
    const hosts = d.hosts.map((x) => el('tr', { 'data-testid': 'tls-host-row', 'data-host': x.host,
      'data-tls': String(x.tls), 'data-verified': String(x.verified), 'data-policy': x.policy },
    el('td', null, el('div', { class: 'site-name' }, x.host), el('div', { class: 'site-key' }, [x.ip, x.domain].filter(Boolean).join(' · '))),
    el('td', null, x.tls ? (x.version || '') + ' ' + (x.cipher || '') : el('span', { class: 'pill pill-suspended' }, 'clear text')),
    el('td', null, el('span', { class: 'pill ' + (x.verified ? 'pill-normal' : 'pill-backoff') }, x.verified ? 'verified' : 'not verified')),
    el('td', null, x.policy),
    el('td', null, tlsTime(x.time)),
    el('td', null, x.failure || '—')));
    replace(box, el('div', null,
      el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'tls-domains-table' },
        el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Domain'), el('th', { scope: 'col' }, 'Policy'),
          el('th', { scope: 'col' }, 'Mode'), el('th', { scope: 'col' }, 'MX patterns'), el('th', { scope: 'col' }, 'Expires'))),
        el('tbody', null, domains))),
      el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'tls-hosts-table' },
        el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'MX host'), el('th', { scope: 'col' }, 'TLS'),
          el('th', { scope: 'col' }, 'Certificate'), el('th', { scope: 'col' }, 'Policy'), el('th', { scope: 'col' }, 'When'),
          el('th', { scope: 'col' }, 'Failure'))),
        el('tbody', null, hosts)))));
  }

  // fetchWarmup returns {sources} from /warmup, or {error} (an older node
  // without the route).
  async function fetchWarmup() {
    try {
      const d = await api('warmup');
      return { sources: (d && d.sources) || [] };
    } catch (e) {
      if (e.status === 401) throw e;
      return { sources: [], error: e.status === 404 ? 'this node does not report warm-up' : e.message };
    }
  }

  function renderWarmup(d) {
    if (unchanged('warmup', d)) return;
    const box = $('warmup-body');
    if (d.sources.length === 0) {
      replace(box, el('p', { class: 'empty', 'data-testid': 'warmup-empty' },
        d.error ? 'No warm-up status: ' + d.error + '.' : 'No source is warming up ([[warmup]] in the configuration).'));
      return;
    }
    const rows = d.sources.map((x) => {
      const t = x.today || {};
      const health = x.warm ? 'warm' : (x.healthy ? 'healthy' : 'unhealthy');
      const pill = { warm: 'pill-normal', healthy: 'pill-normal', unhealthy: 'pill-backoff' }[health];
      const limit = x.limit < 0 ? '∞' : fmtInt(x.limit);
      return el('tr', { 'data-testid': 'warmup-row', 'data-source': x.source, 'data-group': x.group },
        el('td', null, el('div', { class: 'site-name' }, x.source), el('div', { class: 'site-key' }, x.group)),
        el('td', { class: 'num' }, num('warmup-day', x.day, fmtInt(x.day))),
        el('td', { class: 'num' }, x.warm ? 'warm' : fmtInt(x.step) + ' / ' + fmtInt(x.steps)),
        el('td', { class: 'num' }, num('warmup-sent', x.sent, fmtInt(x.sent)), ' / ', limit),
        el('td', null, el('span', { class: 'pill ' + pill }, health),
          el('div', { class: 'site-key' }, 'deferred ' + fmtInt(t.deferred) + ' · throttles ' + fmtInt(t.throttles) +
            ' · complaints ' + fmtInt(t.complaints))),
        el('td', null, x.next_action, el('div', { class: 'site-key' }, 'at ' + new Date(x.next_decision).toISOString().slice(0, 16).replace('T', ' ') + ' UTC')));
    });
    replace(box, el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'warmup-table' },
      el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Source'), el('th', { scope: 'col', class: 'num' }, 'Day'),
        el('th', { scope: 'col', class: 'num' }, 'Step'), el('th', { scope: 'col', class: 'num' }, 'Today / limit'),
        el('th', { scope: 'col' }, 'Health (today)'), el('th', { scope: 'col' }, 'Next decision'))),
      el('tbody', null, rows))));
  }

  // ---------- site detail ----------

  async function showSite(key) {
    if ($('view-site').hidden) {
      st.drawn.site = '';
      replace($('site-body'), el('p', { class: 'empty' }, 'Loading ' + key + '…'));
    }
    showView('site');
    const enc = encodeURIComponent(key);
    const [view, flow, status, advice] = await Promise.all([
      optional(api('queues/' + enc)), optional(api('sites/' + enc + '/flow')), api('status'), fetchAdvice(),
    ]);
    renderLocal(status);
    const box = $('site-body');
    if (!view) {
      if (unchanged('site', ['missing', key])) return;
      replace(box, el('p', { class: 'crumbs' }, el('a', { href: '#' }, '← Overview')),
        el('div', { class: 'panel', 'data-testid': 'site-missing' }, el('h1', null, 'Unknown site'),
          el('p', null, 'No site or domain named ', el('code', null, key), ' is known to this node. Sites appear once mail to one of their domains is queued.')));
      document.title = 'Unknown site · Penstock';
      return;
    }
    const changes = (flow && flow.changes) || [];
    const W = chartWidth(box, 480);
    // The timeline's right edge is now: redraw at least every 10 s.
    if (unchanged('site', [view, changes, W, advice, Math.floor(Date.now() / 10000)])) return;
    document.title = shortSite(view.site) + ' · Penstock';
    renderSiteDetail(box, view, changes, W);
    box.firstChild.append(siteAdvicePanel(view, advice));
  }

  function kv(pairs) {
    return el('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [el('dt', null, k), el('dd', null, v === undefined || v === null || v === '' ? '—' : v)]));
  }

  function factorText(f, state) {
    if (f === undefined || f === null || f >= 1) return 'as the rule says';
    if (f <= 0) return state === 'suspended' ? 'none: probes only' : 'none';
    return '× ' + (Math.round(f * 1000) / 1000) + ' of the rule';
  }

  function renderSiteDetail(box, v, changes, W) {
    const rule = v.rule || {};
    const flow = v.flow || {};
    const wait = v.wait;
    const maxConn = rule.max_connections || 0;
    const head = [
      el('p', { class: 'crumbs' }, el('a', { href: '#' }, '← Overview'), el('span', { class: 'muted' }, ' / '), el('a', { href: '#sites' }, 'Sites')),
      el('div', { class: 'site-head' },
        el('h1', { id: 'h-site' }, shortSite(v.site)),
        statePill(flow.state, 'site-flow-state'),
        v.suspended_by_operator ? el('span', { class: 'pill pill-suspended' }, 'suspended by operator') : null,
        el('span', { class: 'pill pill-info', title: rule.why || '' }, 'rule ' + (rule.name || '—'))),
      el('div', { class: 'site-sub', 'data-testid': 'site-key', 'data-value': v.site }, v.site),
    ];
    const cards = el('div', { class: 'cards' },
      card('Queued', 'site-queued', v.queued, 'queued', ''),
      card('In delivery', 'site-in-flight', v.in_flight, 'sites', fmtInt(v.connections) + ' of ' + (maxConn ? fmtInt(maxConn) : '∞') + ' connections'),
      card('Delivered', 'site-delivered', v.delivered, 'delivered', fmtInt(v.delivered_last_hour) + ' in the last hour'),
      card('Bounced', 'site-bounced', v.bounced, 'bounced', ''),
      card('Deferred', 'site-deferred', v.deferred, 'deferred', 'temporary failures'),
      card('Expired', 'site-expired', v.expired, 'expired', ''));

    const routing = el('section', { class: 'panel', 'aria-labelledby': 'h-routing' },
      el('div', { class: 'panel-head' }, el('h2', { id: 'h-routing' }, 'Routing')),
      el('h3', null, 'MX hosts'),
      el('ul', { class: 'plain mono', 'data-testid': 'mx-hosts' }, (v.mx_hosts || []).map((h) => el('li', null, h))),
      el('h3', null, 'MX rule'),
      kv([
        ['Rule', el('b', null, rule.name || '—')],
        ['Pattern', rule.pattern ? el('code', null, rule.pattern) : 'none (catch-all)'],
        ['Matched host', rule.matched_host ? el('code', null, rule.matched_host) : null],
        ['Scope', rule.scope],
        ['Connections', maxConn ? fmtInt(maxConn) + ' at most' : 'unlimited'],
        ['Per connection', rule.max_messages_per_connection ? fmtInt(rule.max_messages_per_connection) + ' messages' : 'unlimited'],
        ['Per hour', rule.messages_per_hour ? fmtInt(rule.messages_per_hour) + ' messages' : 'unlimited'],
        rule.max_connection_rate ? ['Connection rate', rule.max_connection_rate + ' (opens per period)'] : null,
        rule.messages_per_day ? ['Per day', fmtInt(rule.messages_per_day) + ' messages (rolling 24 h)'] : null,
        ['TLS', rule.tls],
      ]),
      rule.why ? el('div', { class: 'why', 'data-testid': 'rule-why' }, rule.why) : null);

    const byStatus = statusList(v.by_status || {}, 0, 'site-status-count');
    const waits = el('section', { class: 'panel', 'aria-labelledby': 'h-wait' },
      el('div', { class: 'panel-head' }, el('h2', { id: 'h-wait' }, 'Why mail waits')),
      wait ? [
        el('div', { class: 'wait-status', 'data-testid': 'wait-status', 'data-value': wait.status }, wait.status),
        el('div', { class: 'why' }, wait.detail || ''),
        el('h3', null, 'The numbers'),
        kv([
          ['Since', timeWithRel(parseTime(wait.since))],
          ['Next slot', parseTime(wait.until) ? timeWithRel(parseTime(wait.until)) : 'when a connection frees'],
          wait.rule ? ['Rule', wait.rule] : null,
          wait.key ? ['Quota key', el('code', null, wait.key)] : null,
          wait.limit ? ['In use', fmtInt(wait.in_use) + ' of ' + fmtInt(wait.limit)] : null,
        ]),
      ] : el('p', { class: 'muted', 'data-testid': 'wait-status', 'data-value': '' },
        v.queued > 0 ? 'No quota or flow-control hold: queued mail goes as soon as it is due.' : 'Nothing waits for this site.'),
      el('h3', null, 'Recipients by status'),
      byStatus || el('p', { class: 'muted' }, 'None queued.'));

    const quotas = el('section', { class: 'panel', 'aria-labelledby': 'h-quotas' },
      el('div', { class: 'panel-head' }, el('h2', { id: 'h-quotas' }, 'Quotas in force')),
      (v.quotas || []).length === 0 ? el('p', { class: 'muted' }, 'No quota is held right now: counters appear while connections are open or the hourly bucket is in use.') :
        el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'quotas-table' },
          el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Kind'), el('th', { scope: 'col' }, 'Key'),
            el('th', { scope: 'col' }, 'Use'), el('th', { scope: 'col' }, 'Next slot'))),
          el('tbody', null, v.quotas.map((q) => {
            const rate = q.Kind === 'rate';
            const lim = rate ? q.Burst : q.Limit;
            const bar = el('span');
            if (lim) setWidth(bar, q.InUse / lim);
            if (lim && q.InUse >= lim) bar.classList.add('full');
            return el('tr', { 'data-testid': 'quota-row' },
              el('td', null, rate ? 'messages per hour' : 'connections'),
              el('td', null, el('code', null, q.Key)),
              el('td', null, el('div', { class: 'meter' }, el('div', { class: 'hbar', 'aria-hidden': 'true' }, bar),
                el('span', { class: 'num' }, rate ? fmtInt(q.InUse) + ' of ' + fmtInt(q.Burst) + ' burst · ' + fmtInt(q.Limit) + '/h' :
                  fmtInt(q.InUse) + ' of ' + fmtInt(q.Limit)))),
              el('td', null, rate && parseTime(q.NextSlot) ? timeWithRel(parseTime(q.NextSlot)) : '—'));
          })))));

    const flowPanel = el('section', { class: 'panel', 'aria-labelledby': 'h-flow' },
      el('div', { class: 'panel-head' }, el('h2', { id: 'h-flow' }, 'Flow control'),
        el('div', { class: 'legend' }, STATES.map((s) => el('span', null, el('i', { class: 'sw sw-' + s }), s)))),
      el('div', { class: 'grid-halves' },
        kv([
          ['State', statePill(flow.state)],
          ['Holding mail', flow.hold ? 'yes' : 'no'],
          ['Connections', factorText(flow.connections_factor, flow.state)],
          ['Rate', factorText(flow.rate_factor, flow.state)],
          flow.observed_per_hour ? ['Rate before trouble', fmtInt(flow.observed_per_hour) + ' per hour'] : null,
          ['Since', timeWithRel(parseTime(flow.since))],
          ['Until', parseTime(flow.until) ? timeWithRel(parseTime(flow.until)) : null],
        ]),
        kv([
          ['Attempts in window', num('flow-attempts', flow.attempts)],
          ['Errors in window', num('flow-errors', flow.errors)],
          ['Error ratio', fmtPct(flow.error_ratio || 0)],
          ['Diagnosis', flow.diagnosis ? el('b', null, flow.diagnosis) : null],
          ['Local problem', flow.local_problem ? el('b', null, 'yes: the cause is most likely on our side') : 'no'],
        ])),
      flow.detail ? el('div', { class: 'why' }, flow.detail) : null,
      (flow.last_errors || []).length ? [el('h3', null, 'Last errors'), el('ul', { class: 'errors' }, flow.last_errors.map((e) => el('li', null, e)))] : null,
      el('h3', null, 'Timeline'),
      el('div', { class: 'chart' }, flowChart(changes, flow.state, W - 34)),
      changes.length ? el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'flow-changes' },
        el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Time'), el('th', { scope: 'col' }, 'Change'), el('th', { scope: 'col' }, 'Reason'))),
        el('tbody', null, changes.slice().reverse().map((c) => el('tr', { 'data-testid': 'flow-change', 'data-state': c.state },
          el('td', { class: 'nowrap' }, fmtDateTime(parseTime(c.time))),
          el('td', null, statePill(c.state), ' ', el('span', { class: 'muted' }, c.change || '')),
          el('td', null, c.reason || '')))))) : null);

    const replies = el('section', { class: 'panel', 'aria-labelledby': 'h-replies' },
      el('div', { class: 'panel-head' }, el('h2', { id: 'h-replies' }, 'Recent replies')),
      (v.recent_replies || []).length === 0 ? el('p', { class: 'muted' }, 'No reply recorded yet.') :
        el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'replies-table' },
          el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Time'), el('th', { scope: 'col' }, 'Reply'), el('th', { scope: 'col' }, 'MX host'))),
          el('tbody', null, v.recent_replies.slice().reverse().map((r) => el('tr', { 'data-testid': 'reply-row' },
            el('td', { class: 'nowrap' }, fmtClock(parseTime(r.time))),
            el('td', null, codePill(r.code), replyLine(r), r.local ? el('span', { class: 'muted' }, ' (our side)') : ''),
            el('td', null, r.mx_host ? el('code', null, r.mx_host) : '—', r.mx_ip ? el('div', { class: 'site-key' }, r.mx_ip) : null)))))));

    replace(box, el('article', { 'data-testid': 'site-detail', 'data-site': v.site }, head, cards,
      el('div', { class: 'grid-halves' }, routing, waits), flowPanel, el('div', { class: 'grid-halves' }, quotas, replies)));
  }

  // ---------- the advisor ----------

  // fetchAdvice returns the advisor's recommendations ({recs}) or {recs: [],
  // error}, fetched at most once a minute: the advisor reads the delivery
  // log of the last 7 days.
  async function fetchAdvice() {
    if (st.advice && Date.now() - st.adviceAt < ADVICE_MAX_AGE_MS) return st.advice;
    let a;
    try {
      const r = await api('advise?since=' + ADVICE_SINCE);
      a = { recs: (r && r.recommendations) || [] };
    } catch (e) {
      if (e.status === 401) throw e;
      a = { recs: [], error: e.status === 404 ? 'this node has no advisor API' : e.message };
    }
    st.advice = a;
    st.adviceAt = Date.now();
    return a;
  }

  function adviceHead(r) {
    let h = 'rule ' + r.rule;
    if (r.key && r.to) h += ': ' + r.key + ' ' + r.from + ' → ' + r.to;
    return h;
  }
  // diffBlock shows a recommendation's [[mx_rule]] change, - and + lines
  // marked.
  function diffBlock(diff) {
    const lines = String(diff).replace(/\n$/, '').split('\n');
    return el('pre', { class: 'diff', 'data-testid': 'advice-diff' }, lines.map((l) =>
      el('span', { class: l.startsWith('+') ? 'diff-add' : l.startsWith('-') ? 'diff-del' : '' }, l + '\n')));
  }
  function adviceItem(r) {
    return el('li', { class: 'advice', 'data-testid': 'advice-row', 'data-kind': r.kind, 'data-rule': r.rule, 'data-site': r.site || '' },
      el('div', null, el('span', { class: 'pill pill-advice-' + r.kind }, r.kind), ' ', el('b', null, adviceHead(r))),
      el('p', { class: 'advice-why', 'data-testid': 'advice-evidence' }, r.evidence),
      r.effect ? el('p', { class: 'muted' }, r.effect) : null,
      r.diff ? el('details', null, el('summary', null, 'Configuration change'), diffBlock(r.diff)) : null);
  }
  function adviceMessage(a, testid, none) {
    if (a.error) return el('p', { class: 'empty', 'data-testid': 'advice-error' }, 'The advisor is not available: ' + a.error);
    return el('p', { class: 'empty', 'data-testid': testid }, none);
  }

  // renderAdvice lists the findings per site (a rule's own findings, like
  // a rule that never matches, under the rule).
  function renderAdvice(a) {
    if (unchanged('advice', a)) return;
    const box = $('advice-body');
    if (a.error || a.recs.length === 0) {
      replace(box, adviceMessage(a, 'advice-empty', 'No recommendations: nothing in the last 7 days argues for a change.'));
      return;
    }
    const groups = new Map();
    for (const r of a.recs) {
      const k = r.site ? 'site\u0000' + r.site : 'rule\u0000' + r.rule;
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(r);
    }
    const keys = [...groups.keys()].sort();
    replace(box, keys.map((k) => {
      const [kind, name] = k.split('\u0000');
      const title = kind === 'site' ? el('a', { href: siteHref(name) }, breakable(shortSite(name))) : 'Rule ' + name;
      return el('section', { class: 'advice-group', 'data-testid': 'advice-group', 'data-site': kind === 'site' ? name : '' },
        el('h3', null, title), el('ul', { class: 'plain' }, groups.get(k).map(adviceItem)));
    }));
  }

  // siteAdvicePanel is the advisor's findings for one site: those naming
  // it, and those about its rule as a whole.
  function siteAdvicePanel(v, a) {
    const rule = (v.rule || {}).name;
    const recs = a.recs.filter((r) => r.site === v.site || (!r.site && r.rule === rule));
    return el('section', { class: 'panel', 'aria-labelledby': 'h-site-advice', 'data-testid': 'site-advice' },
      el('div', { class: 'panel-head' }, el('h2', { id: 'h-site-advice' }, 'Advisor ', el('span', { class: 'muted' }, '· last 7 days, from the delivery log'))),
      recs.length ? el('ul', { class: 'plain' }, recs.map(adviceItem)) : adviceMessage(a, 'site-advice-empty', 'No recommendation for this site or its rule.'));
  }

  // flowChart draws a site's flow state over time: one lane per state, a
  // coloured band for each period, a marker at each change whose tooltip
  // gives the reason. The axis spans the recorded changes (at least five
  // minutes) up to now.
  function flowChart(changes, current, W) {
    W = Math.max(W, 360);
    const H = 132, ml = 84, mr = 14, mt = 6, mb = 24;
    const pw = W - ml - mr, lh = (H - mt - mb) / 3;
    const now = Date.now();
    const cs = changes.map((c) => ({ c, t: (parseTime(c.time) || new Date(now)).getTime() })).sort((a, b) => a.t - b.t);
    const first = cs.length ? cs[0].t : now;
    // Leave a fifth of the width before the first change, so the state it
    // left shows; at least a minute, so a fresh change is not a sliver.
    const span = Math.max((now - first) * 1.25, 60000);
    const t0 = now - span;
    const x = (t) => ml + ((t - t0) / span) * pw;
    const laneY = (s) => mt + Math.max(0, STATES.indexOf(s)) * lh;
    const mid = (s) => laneY(s) + lh / 2;
    const kids = [];
    STATES.forEach((s) => {
      kids.push(sv('rect', { class: 'lane', x: ml, y: laneY(s) + 2, width: pw, height: lh - 4, rx: 3 }));
      kids.push(sv('text', { class: 'lane-label', x: ml - 8, y: mid(s) + 4, 'text-anchor': 'end' }, s));
    });
    // Periods: before the first change the state is its "from" side.
    const from = cs.length ? String(cs[0].c.change || '').split('->')[0].trim() : '';
    const periods = [];
    let state = STATES.includes(from) ? from : cs.length ? 'normal' : current || 'normal';
    let start = t0;
    for (const { c, t } of cs) {
      periods.push({ state, a: start, b: t });
      state = c.state;
      start = t;
    }
    periods.push({ state, a: start, b: now });
    // Axis ticks at a round step, about six of them.
    const steps = [10e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 21600e3, 43200e3, 86400e3];
    const step = steps.find((s) => span / s <= 7) || 86400e3;
    for (let t = Math.ceil(t0 / step) * step; t <= now; t += step) {
      kids.push(sv('line', { class: 'grid', x1: x(t), x2: x(t), y1: mt, y2: H - mb }));
      kids.push(sv('text', { x: x(t), y: H - 6, 'text-anchor': 'middle' }, fmtClock(new Date(t), step < 60e3)));
    }
    let path = '';
    periods.forEach((p, i) => {
      const s = STATES.includes(p.state) ? p.state : 'normal';
      const xa = x(p.a), xb = x(p.b);
      // Before the first recorded change the state is inferred: drawn faint.
      const lead = i === 0 && cs.length > 0;
      kids.push(sv('rect', { class: 'band-' + s + (lead ? ' lead' : ''), x: xa, y: laneY(s) + lh * 0.22, width: Math.max(xb - xa, 1.5), height: lh * 0.56, rx: 2 },
        sv('title', null, lead ? s + ' before the first recorded change (' + fmtClock(new Date(p.b)) + ')' :
          s + ' from ' + fmtClock(new Date(p.a)) + (i === periods.length - 1 ? ' until now' : ' to ' + fmtClock(new Date(p.b))) +
          ' (' + fmtDur(p.b - p.a) + ')')));
      path += (i === 0 ? 'M' : 'L') + xa.toFixed(1) + ' ' + mid(s).toFixed(1) + 'L' + xb.toFixed(1) + ' ' + mid(s).toFixed(1);
    });
    kids.push(sv('path', { class: 'step', d: path }));
    kids.push(sv('line', { class: 'now', x1: x(now), x2: x(now), y1: mt, y2: H - mb }));
    cs.forEach(({ c, t }) => {
      kids.push(sv('circle', { class: 'mark', cx: x(t), cy: mid(STATES.includes(c.state) ? c.state : 'normal'), r: 4.5, 'data-testid': 'flow-mark' },
        sv('title', null, fmtDateTime(new Date(t)) + ' · ' + (c.change || c.state) + (c.reason ? ': ' + c.reason : ''))));
    });
    if (!cs.length) kids.push(sv('text', { x: ml + pw / 2, y: H - mb - 4, 'text-anchor': 'middle' }, 'No flow-control change recorded'));
    const label = cs.length ? 'Flow-control timeline: ' + cs.length + ' changes; now ' + (current || state) + '.' :
      'Flow-control timeline: no change recorded; the site is ' + (current || 'normal') + '.';
    return sv('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-label': label, 'data-testid': 'flow-chart' }, kids);
  }

  // ---------- start ----------

  function start() {
    loadToken();
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token-input').value.trim();
      if (!t) return;
      saveToken(t);
      $('token-input').value = '';
      $('token-form').hidden = true;
      st.waitingForToken = false;
      tick();
    });
    $('site-filter').addEventListener('input', () => { st.showAllSites = false; redrawSites(); });
    window.addEventListener('hashchange', () => {
      if (route().site) window.scrollTo(0, 0);
      tick();
    });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
    let resizeTimer = 0;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { st.drawn = {}; tick(); }, 200);
    });
    tick();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
