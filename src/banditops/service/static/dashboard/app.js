/* banditops dashboard: plain JavaScript, no library, no build step.
 *
 * The page holds no data until a key the server accepts is typed; the key lives in this
 * tab's sessionStorage and travels as "Authorization: Bearer". Every string the server sends
 * (version names, reasons, evidence) is inserted with textContent or as an SVG <title> text
 * node, never as HTML. Charts are SVG drawn here (a few hundred lines instead of a vendored
 * chart library: nothing to audit or update, no canvas, styled by style.css).
 */
"use strict";

(() => {
  const KEY = "banditops.key";
  const DEPLOYMENT = "banditops.deployment";
  const REFRESH_MS = 3000;
  const REPORT_AGE = 2; // seconds: open dashboards share one report (see endpoints.show)
  const BUCKETS = 60;
  const MAX_EVENTS = 500;
  const SVG = "http://www.w3.org/2000/svg";
  const STATUSES = ["live", "dark", "rolled_back", "quarantined", "retired"];

  const $ = (id) => document.getElementById(id);
  const state = {
    key: null, deployments: [], deployment: null, minutes: 15, generation: 0,
    timer: null, ticker: null, lastOk: null, report: null, history: null,
    events: [], nextSeq: 0, colors: new Map(), highlight: new Set(),
    adminRefused: null, // the server's 403 detail once this key was refused an admin action
  };

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
    }
  }

  // ------------------------------------------------------------------ helpers
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attributes, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, String(value));
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function number(value, digits = 3) {
    if (value === null || value === undefined) return "—";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    if (Math.abs(value) >= 1000) return value.toLocaleString("en-US", {maximumFractionDigits: 1});
    return Number(value.toPrecision(digits)).toString();
  }

  function percent(value) {
    return value === null || value === undefined ? "—" : (100 * value).toFixed(1) + " %";
  }

  function clock(seconds, withDate) {
    const when = new Date(seconds * 1000);
    const time = when.toLocaleTimeString("en-GB", {hour12: false});
    return withDate ? when.toLocaleDateString("en-CA") + " " + time : time;
  }

  function colorOf(version) {
    if (!state.colors.has(version)) state.colors.set(version, state.colors.size % 8);
    return "c" + state.colors.get(version);
  }

  function path(deployment, rest) {
    return "/v1/deployments/" + encodeURIComponent(deployment) + (rest || "");
  }

  // ---------------------------------------------------------------------- API
  async function api(url, options) {
    const init = Object.assign({cache: "no-store"}, options || {});
    init.headers = {Authorization: "Bearer " + state.key};
    if (init.body !== undefined) init.headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      throw new ApiError(0, "no answer (" + error.message + ")");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail
        : "HTTP " + response.status;
      throw new ApiError(response.status, detail);
    }
    return body;
  }

  // -------------------------------------------------------------- signing in
  async function signIn(key, fromStorage) {
    state.key = key;
    let listing;
    try {
      listing = await api("/v1/deployments");
    } catch (error) {
      signOut(error.status === 0 ? error.detail
        : (fromStorage ? "Sign in again: " : "") + error.detail + " (HTTP " + error.status + ")");
      return;
    }
    sessionStorage.setItem(KEY, key);
    state.deployments = listing.deployments.map((d) => d.name);
    const select = $("deployment");
    clear(select);
    for (const name of state.deployments) {
      const option = el("option", null, name);
      option.value = name;
      select.appendChild(option);
    }
    const remembered = sessionStorage.getItem(DEPLOYMENT);
    choose(state.deployments.includes(remembered) ? remembered : state.deployments[0]);
    $("key").value = "";
    $("login").hidden = true;
    $("session").hidden = false;
    $("view").hidden = false;
    state.ticker = setInterval(showAge, 1000);
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    state.key = null;
    state.adminRefused = null;
    state.generation += 1;
    clearTimeout(state.timer);
    clearInterval(state.ticker);
    forget();
    state.deployments = [];
    clear($("deployment"));
    $("session").hidden = true;
    $("view").hidden = true;
    $("banner").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("key").focus();
  }

  /** Drop every figure of the current deployment (switching, signing out). */
  function forget() {
    state.report = null;
    state.history = null;
    state.events = [];
    state.nextSeq = 0;
    state.lastOk = null;
    state.highlight.clear();
    clear($("versions").tBodies[0]);
    clear($("events"));
    for (const id of ["chart-share", "chart-reward", "chart-counts", "legend-share",
      "legend-reward", "legend-counts"]) clear($(id));
    $("summary").textContent = "";
    $("updated").textContent = "";
    $("notice").hidden = true;
  }

  function choose(name) {
    state.generation += 1;
    state.deployment = name;
    sessionStorage.setItem(DEPLOYMENT, name);
    $("deployment").value = name;
    forget();
    refreshNow();
  }

  // ---------------------------------------------------------------- refreshing
  function refreshNow() {
    clearTimeout(state.timer);
    return tick();
  }

  async function tick() {
    const generation = state.generation;
    await refresh(generation);
    if (state.key && generation === state.generation) {
      clearTimeout(state.timer);
      state.timer = setTimeout(tick, REFRESH_MS);
    }
  }

  async function refresh(generation) {
    const name = state.deployment;
    if (!state.key || !name) return;
    try {
      const [report, history, events] = await Promise.all([
        api(path(name, "?max_age=" + REPORT_AGE)),
        api(path(name, "/history?minutes=" + state.minutes + "&buckets=" + BUCKETS)),
        newEvents(name),
      ]);
      if (generation !== state.generation) return;
      state.report = report;
      state.history = history;
      state.lastOk = Date.now();
      $("banner").hidden = true;
      renderVersions(report);
      renderCharts(history);
      renderEvents(events);
      if (!document.body.dataset.loaded) {
        document.body.dataset.loaded = "1";
        performance.mark("banditops:first-data"); // read by benchmarks/dashboard.py
      }
      showAge();
    } catch (error) {
      if (generation !== state.generation) return;
      if (error.status === 401) {
        signOut("The server no longer accepts this key: " + error.detail);
        return;
      }
      const banner = $("banner");
      banner.textContent = (error.status === 0 ? "Cannot reach the server: " + error.detail
        : "The server answered " + error.status + ": " + error.detail)
        + (state.lastOk ? ". Showing what it said " + age() + " ago; retrying." : "; retrying.");
      banner.hidden = false;
    }
  }

  async function newEvents(name) {
    const found = [];
    for (let page = 0; page < 10; page += 1) {
      const since = found.length ? found[found.length - 1].seq + 1 : state.nextSeq;
      const batch = (await api(path(name, "/events?since=" + since + "&limit=1000"))).events;
      found.push(...batch);
      if (batch.length < 1000) break;
    }
    return found;
  }

  function age() {
    return Math.max(0, Math.round((Date.now() - state.lastOk) / 1000)) + " s";
  }

  function showAge() {
    $("updated").textContent = state.lastOk ? "updated " + age() + " ago" : "loading…";
  }

  // ---------------------------------------------------------------- versions
  const ACTIONS = {
    live: ["rollback", "retire"],
    dark: ["promote", "rollback", "retire"],
    rolled_back: ["reinstate", "retire"],
    quarantined: ["reinstate", "retire"],
    retired: [],
  };
  const ACTION = {
    rollback: {label: "Roll back", method: "POST", suffix: "/rollback",
      text: "It stops serving traffic at once; reinstate puts it back."},
    reinstate: {label: "Reinstate", method: "POST", suffix: "/reinstate",
      text: "It goes live again and the policy sends it traffic."},
    promote: {label: "Promote", method: "POST", suffix: "/promote",
      text: "It goes live before its shadow evidence decides."},
    retire: {label: "Retire", method: "DELETE", suffix: "",
      text: "Retired versions never serve again; this cannot be undone."},
  };

  function renderVersions(report) {
    const parts = ["policy " + report.policy, "release " + report.release,
      "shadow " + (report.shadow || "off")];
    // A contextual policy's share is its choice for an average request, not the real split.
    if (report.contextual) parts.push("contextual: traffic share below is for an average " +
      "request; the chart shows the split served");
    $("summary").textContent = "· " + parts.join(" · ");
    const body = $("versions").tBodies[0];
    clear(body);
    for (const v of report.versions) {
      const row = el("tr");
      row.dataset.version = v.name;
      const name = el("td", "name");
      name.appendChild(el("span", "swatch " + colorOf(v.name)));
      name.appendChild(el("span", null, v.name));
      row.appendChild(name);
      const status = STATUSES.includes(v.status) ? v.status : "other";
      const cell = el("td");
      cell.appendChild(el("span", "badge status-" + status, v.status.replace("_", " ")));
      row.appendChild(cell);
      const judged = evaluation(v, report);
      const judgement = el("td", "judgement", judged.text);
      if (judged.title) judgement.title = judged.title;
      row.appendChild(judgement);
      row.appendChild(el("td", "num share", percent(v.traffic_share)));
      row.appendChild(el("td", "num", number(v.decisions)));
      row.appendChild(el("td", "num", number(v.feedbacks)));
      const reward = v.reward_mean === null ? "—" : number(v.reward_mean) + " ["
        + number(v.ci_low) + ", " + number(v.ci_high) + "]";
      row.appendChild(el("td", "num", reward));
      row.appendChild(el("td", "num shadow", v.shadow_rewards ? number(v.shadow_rewards)
        + " · " + number(v.shadow_reward_mean) : "—"));
      row.appendChild(el("td", "num", number(v.validation_score)));
      const actions = el("td", "actions");
      for (const action of ACTIONS[v.status] || []) {
        const button = el("button", action === "reinstate" || action === "promote" ? "" : "danger",
          ACTION[action].label);
        button.type = "button";
        button.dataset.action = action;
        if (state.adminRefused !== null) {
          // The server refused this key an admin action (403): it has no admin scope.
          button.disabled = true;
          button.title = "needs an admin key: the server refused this one (" + state.adminRefused
            + ")";
        }
        button.addEventListener("click", () => act(action, v.name));
        actions.appendChild(button);
      }
      row.appendChild(actions);
      body.appendChild(row);
    }
  }

  /** The Evaluation cell: the verdict and the evidence behind it (text, tooltip). */
  function evaluation(v, report) {
    if (v.judgement === "evaluating") {
      const live = report.versions.filter((o) => o.status === "live" && o.reward_mean !== null);
      const best = live.length ? Math.max(...live.map((o) => o.reward_mean)) : null;
      const title = "Released dark: it serves nobody. Its predictions on requests a live "
        + "version answered are scored when their labels arrive (paired rewards); it is "
        + "promoted once they show it is not worse than the live versions, rolled back if "
        + "they show it is.";
      if (!v.shadow_rewards) return {text: "evaluating: no paired rewards yet", title: title};
      return {text: "evaluating: " + number(v.shadow_rewards) + " paired rewards, mean "
        + number(v.shadow_reward_mean) + (best === null ? "" : " vs best live "
        + number(best)), title: title};
    }
    if (v.judgement === "not judged yet") {
      const need = report.guardrail_min_samples;
      const title = "The guardrail compares each live version's rewards since it went live "
        + "(or was reinstated) with the best live version's, and gives no verdict until both "
        + "have " + (need === null || need === undefined ? "min_samples" : number(need))
        + " of them: no data is never a pass.";
      const have = v.guardrail_rewards;
      if (have === null || have === undefined || need === null || need === undefined) {
        return {text: "not judged yet", title: title};
      }
      if (have < need) {
        return {text: "not judged yet: " + number(have) + " of " + number(need)
          + " rewards since it went live", title: title};
      }
      const short = report.versions.filter((o) => o.name !== v.name && o.status === "live"
        && o.guardrail_rewards !== null && o.guardrail_rewards < need);
      return {text: "not judged yet: no other live version has " + number(need)
        + " rewards to compare with" + (short.length ? " (" + short.map((o) => o.name
        + " has " + number(o.guardrail_rewards)).join(", ") + ")" : ""), title: title};
    }
    return {text: v.judgement || "—", title: null};
  }

  // ------------------------------------------------------------- admin actions
  function confirmAction(title, text) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("reason").value = "";
    return new Promise((resolve) => {
      const done = (value) => {
        $("confirm-form").removeEventListener("submit", ok);
        $("confirm-cancel").removeEventListener("click", cancel);
        dialog.removeEventListener("cancel", cancel);
        dialog.close();
        resolve(value);
      };
      const ok = (event) => { event.preventDefault(); done($("reason").value.trim()); };
      const cancel = (event) => { event.preventDefault(); done(null); };
      $("confirm-form").addEventListener("submit", ok);
      $("confirm-cancel").addEventListener("click", cancel);
      dialog.addEventListener("cancel", cancel);
      dialog.showModal();
      $("reason").focus();
    });
  }

  async function act(action, version) {
    const spec = ACTION[action];
    const deployment = state.deployment;
    const reason = await confirmAction(spec.label + " " + version + "?",
      spec.label + " version " + version + " of " + deployment + ". " + spec.text);
    if (reason === null) return;
    const options = {method: spec.method};
    if (reason) options.body = JSON.stringify({reason: reason});
    const before = state.nextSeq;
    try {
      const answer = await api(path(deployment, "/versions/" + encodeURIComponent(version)
        + spec.suffix), options);
      notice("ok", spec.label + ": " + answer.name + " is now " + answer.status.replace("_", " ")
        + ". The event is at the top of the timeline.");
      state.highlightFrom = before;
    } catch (error) {
      let text = spec.label + " " + version + " refused (HTTP " + error.status + "): "
        + error.detail;
      if (error.status === 403) {
        state.adminRefused = error.detail;
        text += ". The action buttons are disabled: they need an admin key.";
        if (state.report) renderVersions(state.report);
      }
      notice("error", text);
      return;
    }
    await refreshNow();
  }

  function notice(kind, text) {
    const box = $("notice");
    box.className = "notice " + kind;
    box.textContent = text;
    box.hidden = false;
  }

  // ------------------------------------------------------------------- events
  function renderEvents(events) {
    const list = $("events");
    for (const event of events) {
      state.nextSeq = Math.max(state.nextSeq, event.seq + 1);
      const item = el("li", "event kind-" + (/^[a-z_]+$/.test(event.kind) ? event.kind : "other"));
      item.dataset.seq = event.seq;
      item.dataset.kind = event.kind;
      if (state.highlightFrom !== undefined && event.seq >= state.highlightFrom) {
        item.classList.add("new");
      }
      const head = el("div", "event-head");
      head.appendChild(el("time", "muted", clock(event.time, true)));
      head.appendChild(el("span", "badge kind", event.kind.replace("_", " ")));
      if (event.version) head.appendChild(el("strong", "event-version", event.version));
      item.appendChild(head);
      item.appendChild(el("p", "reason", event.reason));
      const rows = flatten(event.evidence || {}, "");
      if (rows.length) {
        const details = el("details", "evidence");
        const verdict = event.kind === "rolled_back" || event.kind === "quarantined"
          || event.kind === "promoted";
        details.open = verdict;
        details.appendChild(el("summary", null, (verdict ? "Evidence (" : "Details (")
          + rows.length + " fields)"));
        const table = el("table", "evidence-table");
        const body = el("tbody");
        for (const [key, value] of rows) {
          const row = el("tr");
          row.appendChild(el("th", null, key));
          row.appendChild(el("td", "num", value));
          body.appendChild(row);
        }
        table.appendChild(body);
        details.appendChild(table);
        item.appendChild(details);
      }
      list.insertBefore(item, list.firstChild);
    }
    while (list.children.length > MAX_EVENTS) list.removeChild(list.lastChild);
    $("no-events").hidden = list.children.length > 0;
  }

  /** Nested evidence as [dotted key, printable value] rows (at most 80). */
  function flatten(value, prefix, rows = []) {
    if (rows.length >= 80) return rows;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) {
        flatten(inner, prefix ? prefix + "." + key : key, rows);
      }
    } else if (Array.isArray(value) && value.some((x) => x !== null && typeof x === "object")) {
      value.forEach((inner, i) => flatten(inner, prefix + "[" + i + "]", rows));
    } else {
      const shown = Array.isArray(value) ? value.map((x) => number(x, 4)).join(", ")
        : typeof value === "number" ? number(value, 4) : value === null ? "—" : String(value);
      rows.push([prefix || "value", shown]);
    }
    return rows;
  }

  // ------------------------------------------------------------------- charts
  function renderCharts(history) {
    const width = history.bucket_seconds;
    const label = width >= 60 ? number(width / 60) + " min" : number(width) + " s";
    $("bucket-size").textContent = "per " + label;
    const times = history.decisions.map((_, i) => history.start + (i + 0.5) * width);
    const versions = history.versions.filter((v) => v.decisions.some((n) => n > 0)
      || v.feedbacks.some((n) => n > 0));
    chart($("chart-share"), $("legend-share"), history, times, {
      max: 1, format: percent,
      empty: versions.length === 0,
      series: versions.map((v) => ({name: v.name, cls: colorOf(v.name), values: v.traffic_share,
        tip: (i) => v.name + ": " + percent(v.traffic_share[i]) + " of "
          + number(history.decisions[i]) + " decisions"})),
    });
    chart($("chart-reward"), $("legend-reward"), history, times, {
      max: 1, format: (x) => number(x, 2),
      empty: !versions.some((v) => v.feedbacks.some((n) => n > 0)),
      series: versions.filter((v) => v.feedbacks.some((n) => n > 0)).map((v) => ({
        name: v.name, cls: colorOf(v.name), values: v.reward_mean, low: v.ci_low,
        high: v.ci_high,
        tip: (i) => v.name + ": " + number(v.reward_mean[i]) + " [" + number(v.ci_low[i])
          + ", " + number(v.ci_high[i]) + "], " + number(v.feedbacks[i]) + " rewards"})),
    });
    const most = Math.max(4, ...history.decisions, ...history.feedbacks);
    chart($("chart-counts"), $("legend-counts"), history, times, {
      max: 4 * niceStep(most / 4), format: (x) => number(x), zeroDots: false,
      empty: history.decisions.every((n) => n === 0) && history.feedbacks.every((n) => n === 0),
      series: [ // a wide pale band under a thin line: both show when feedback is immediate
        {name: "decisions", cls: "total wide", values: history.decisions,
          tip: (i) => number(history.decisions[i]) + " decisions"},
        {name: "feedback", cls: "feedback dashed", values: history.feedbacks,
          tip: (i) => number(history.feedbacks[i]) + " feedbacks"},
      ],
    });
  }

  /** The smallest of 1, 2, 5 x 10^k that is >= value (>= 1): whole-number grid lines. */
  function niceStep(value) {
    const power = Math.pow(10, Math.floor(Math.log10(Math.max(1, value))));
    for (const m of [1, 2, 5, 10]) if (m * power >= value) return m * power;
    return 10 * power;
  }

  /** One SVG line chart: a line per series (gaps where a value is null), an optional
   * interval band, y from 0 to ``max``, x over the history's window. */
  function chart(box, legend, history, times, spec) {
    clear(box);
    clear(legend);
    const W = Math.max(280, box.clientWidth || 420);
    const H = 200;
    const m = {left: 46, right: 10, top: 8, bottom: 22};
    const root = svg("svg", {viewBox: "0 0 " + W + " " + H, width: W, height: H,
      role: "img", "aria-label": box.parentElement.querySelector("h2").textContent});
    const x = (t) => m.left + (t - history.start) / (history.end - history.start)
      * (W - m.left - m.right);
    const y = (v) => H - m.bottom - (v / spec.max) * (H - m.top - m.bottom);
    for (let k = 0; k <= 4; k += 1) {
      const value = spec.max * k / 4;
      svg("line", {x1: m.left, x2: W - m.right, y1: y(value), y2: y(value), class: "grid"}, root);
      svg("text", {x: m.left - 6, y: y(value) + 4, class: "axis end"}, root)
        .textContent = spec.format(value);
    }
    for (let k = 0; k <= 4; k += 1) {
      const t = history.start + (history.end - history.start) * k / 4;
      svg("text", {x: x(t), y: H - 6, class: "axis " + (k === 0 ? "start" : k === 4 ? "end"
        : "middle")}, root).textContent = clock(t, false).slice(0, 5);
    }
    if (spec.empty) {
      svg("text", {x: (m.left + W - m.right) / 2, y: (m.top + H - m.bottom) / 2,
        class: "axis middle empty"}, root).textContent = "nothing logged in this window";
    }
    for (const series of spec.series) {
      const group = svg("g", {class: "series " + series.cls}, root);
      if (series.low) {
        for (const run of runs(times, series.low, series.high)) {
          const upper = run.map((i) => x(times[i]) + "," + y(series.high[i]));
          const lower = run.slice().reverse().map((i) => x(times[i]) + "," + y(series.low[i]));
          svg("polygon", {points: upper.concat(lower).join(" "), class: "band"}, group);
        }
      }
      for (const run of runs(times, series.values)) {
        svg("polyline", {points: run.map((i) => x(times[i]) + "," + y(series.values[i]))
          .join(" "), class: "line"}, group);
      }
      series.values.forEach((value, i) => {
        if (value === null || (value === 0 && spec.zeroDots === false)) return;
        const dot = svg("circle", {cx: x(times[i]), cy: y(value), r: 2.2, class: "dot"}, group);
        svg("title", {}, dot).textContent = clock(times[i], false) + " — " + series.tip(i);
      });
      const item = el("span", "legend-item");
      item.appendChild(el("span", "swatch " + series.cls));
      item.appendChild(el("span", null, series.name));
      legend.appendChild(item);
    }
    box.appendChild(root);
  }

  /** Index runs where every given series has a value (a line breaks at an empty bucket). */
  function runs(times, ...columns) {
    const found = [];
    let current = [];
    times.forEach((_, i) => {
      if (columns.every((c) => c[i] !== null && c[i] !== undefined)) {
        current.push(i);
      } else if (current.length) {
        found.push(current);
        current = [];
      }
    });
    if (current.length) found.push(current);
    return found;
  }

  // -------------------------------------------------------------------- start
  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      $("login-error").textContent = "";
      const key = $("key").value.trim();
      if (key) signIn(key, false);
    });
    $("logout").addEventListener("click", () => signOut("Signed out."));
    $("deployment").addEventListener("change", (event) => choose(event.target.value));
    $("window").addEventListener("change", (event) => {
      state.minutes = Number(event.target.value);
      state.history = null;
      refreshNow();
    });
    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => { if (state.history) renderCharts(state.history); }, 150);
    });
    const saved = sessionStorage.getItem(KEY);
    if (saved) {
      signIn(saved, true);
    } else {
      signOut("");
    }
  });
})();
