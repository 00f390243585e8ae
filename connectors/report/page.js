// The review report's page (connectors/report/build.py inlines it into index.html).
// Data arrives as DeepLens.index(overview), DeepLens.rows(what filters need) and
// DeepLens.chunk(n, group details) calls: inline, or from the data files beside index.html, loaded
// by <script src> when needed (file:// allows no fetch()). The first page of groups is drawn from
// chunk 0 before the rows load, so large reports open quickly; filters wait for the rows.
// Every string from the index becomes a text node: nothing here sets innerHTML.
"use strict";

const DeepLens = (() => {
  const PAGE_SIZE = 25;
  const TIER_COLOURS = { exact: "#3b6fd8", near: "#d98a1c", derived: "#a54dc4" };
  const chunks = new Map(); // chunk number -> array of group details
  const loading = new Map(); // chunk number -> Promise
  let data = null; // the overview
  let rows = null; // {folders, groups: [[wasted, kind, [[location, folder, name, tier], ...]], ...]}
  let shown = []; // group numbers that pass the filters, in the chosen order
  let page = 0;

  // ------------------------------------------------------------------ helpers

  function el(tag, attributes, ...children) {
    const node = tag.startsWith("svg:")
      ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
      : document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  function size(n) { // as the CLI prints sizes (connectors/cli/common.py human_size)
    for (const unit of ["B", "KB", "MB", "GB", "TB"]) {
      if (Math.abs(n) < 1000 || unit === "TB") return unit === "B" ? `${n.toFixed(0)} B` : `${n.toFixed(1)} ${unit}`;
      n /= 1000;
    }
    return String(n);
  }

  const count = (n) => n.toLocaleString("en");
  const percent = (part, whole) => (whole ? ` (${((100 * part) / whole).toFixed(1)}%)` : "");

  // ------------------------------------------------------------------ data

  function index(value) { data = value; }

  function chunk(number, groups) { chunks.set(number, groups); }

  function setRows(value) { rows = value; }

  function load(key, file, present) { // a data file beside the page, once
    if (present()) return Promise.resolve();
    if (!loading.has(key)) {
      loading.set(key, new Promise((resolve, reject) => {
        const source = `${data.data}/${file}`;
        const script = el("script", { src: source });
        script.onload = () => (present() ? resolve() : reject(new Error(`${source} holds no data`)));
        script.onerror = () => {
          loading.delete(key);
          reject(new Error(`cannot load ${source}: keep the folder "${data.data}" beside this page`));
        };
        document.head.append(script);
      }));
    }
    return loading.get(key);
  }

  const loadChunk = (number) => load(number, `chunk-${number}.js`, () => chunks.has(number));
  const loadRows = () => load("rows", "groups.js", () => rows !== null);

  function detail(number) {
    return chunks.get(Math.floor(number / data.chunk_size))[number % data.chunk_size];
  }

  // ------------------------------------------------------------------ overview

  function overview() {
    const images = data.locations.reduce((sum, l) => sum + l.images, 0);
    const bytes = data.locations.reduce((sum, l) => sum + l.bytes, 0);
    const byTier = { exact: 0, near: 0, derived: 0 };
    for (const l of data.locations) for (const tier in byTier) byTier[tier] += l.wasted[tier];
    const wasted = data.wasted;
    const plan = data.plan;
    document.getElementById("meta").append(
      `${data.mode === "near" ? "Exact, near and derived copies" : "Exact copies"} from ${data.backend}, ${data.created_at}`,
      plan ? `; plan ${plan.id} (${plan.tiers.join(", ")}; keep rules ${plan.keep_rules.join(", ")})` : "",
    );
    const section = document.getElementById("overview");
    section.append(
      el("div", { class: "cards" },
        stat("images", count(images)), stat("bytes", size(bytes)), stat("duplicate groups", count(data.group_count)),
        stat("wasted", size(wasted) + percent(wasted, bytes)),
        ...Object.entries(byTier).map(([tier, n]) => stat(`wasted, ${tier} copies`, size(n)))),
      el("div", { class: "overview" },
        el("div", {}, el("h2", {}, "Per location"), locationTable(), el("h2", {}, "Wasted bytes per location"), chart()),
        el("div", {}, el("h2", {}, "Largest groups"), largest())),
      el("h2", {}, "Folders holding largely the same images"),
      folderPairs());
  }

  function stat(label, value) {
    return el("div", { class: "stat" }, el("b", {}, value), label);
  }

  function locationTable() {
    const rows = data.locations.map((l) => {
      const total = l.wasted.exact + l.wasted.near + l.wasted.derived;
      return el("tr", {}, el("td", {}, l.name), el("td", { class: "n" }, count(l.images)), el("td", { class: "n" }, size(l.bytes)),
        el("td", { class: "n" }, size(l.wasted.exact)), el("td", { class: "n" }, size(l.wasted.near)),
        el("td", { class: "n" }, size(l.wasted.derived)), el("td", { class: "n" }, size(total) + percent(total, l.bytes)));
    });
    return el("table", { id: "locations" },
      el("tr", {}, ["location", "images", "bytes", "exact", "near", "derived", "wasted"].map((h, i) => el("th", { class: i ? "n" : null }, h))),
      rows);
  }

  function chart() { // wasted bytes per location, stacked by tier: inline SVG
    const bar = 18, gap = 8, labelWidth = 140, width = 560, most = Math.max(1, ...data.locations.map((l) => l.wasted.exact + l.wasted.near + l.wasted.derived));
    const svg = el("svg:svg", { class: "chart", width, height: data.locations.length * (bar + gap) + gap, role: "img", "aria-label": "wasted bytes per location" });
    data.locations.forEach((l, row) => {
      const y = gap + row * (bar + gap);
      let x = labelWidth;
      svg.append(el("svg:text", { x: 0, y: y + bar - 5 }, l.name.length > 20 ? `${l.name.slice(0, 19)}…` : l.name));
      for (const tier of ["exact", "near", "derived"]) {
        const w = ((width - labelWidth - 80) * l.wasted[tier]) / most;
        if (w > 0) svg.append(el("svg:rect", { x, y, width: w, height: bar, fill: TIER_COLOURS[tier] }, el("svg:title", {}, `${tier}: ${size(l.wasted[tier])}`)));
        x += w;
      }
      svg.append(el("svg:text", { x: x + 4, y: y + bar - 5 }, size(l.wasted.exact + l.wasted.near + l.wasted.derived)));
    });
    const legend = el("div", { class: "legend" }, Object.entries(TIER_COLOURS).map(([tier, colour]) => el("span", {}, el("i", { style: `background:${colour}` }), tier)));
    return el("div", {}, svg, legend);
  }

  function largest() {
    const items = (chunks.get(0) || []).slice(0, 10).map((g, number) => {
      const link = el("a", { href: `#group-${number + 1}` }, `#${number + 1} ${g.members[0].path.split("/").pop()}`);
      return el("li", {}, link, ` ${g.kind}, ${g.members.length} copies, wastes ${size(g.wasted)}`);
    });
    return items.length ? el("ol", { id: "largest" }, items) : el("p", { class: "note" }, "No duplicate groups.");
  }

  function folderPairs() {
    if (!data.folder_pairs.length) return el("p", { class: "note" }, "No pair of folders shares most of its images.");
    const rows = data.folder_pairs.map((p) => el("tr", {},
      el("td", { class: "n" }, `${Math.round(100 * p.overlap)}%`), el("td", { class: "n" }, count(p.shared)),
      el("td", { class: "n" }, size(p.reclaimable_bytes)), el("td", {}, `${p.a.location}: ${p.a.folder}`), el("td", {}, `${p.b.location}: ${p.b.folder}`)));
    const more = data.folder_pairs_total > data.folder_pairs.length
      ? el("p", { class: "note" }, `${count(data.folder_pairs.length)} of ${count(data.folder_pairs_total)} pairs shown (deeplens duplicates --folders lists all)`) : null;
    return el("div", {}, el("div", { class: "scroll" }, el("table", { id: "folder-pairs" },
      el("tr", {}, ["overlap", "shared", "reclaimable", "folder A", "folder B"].map((h, i) => el("th", { class: i < 3 ? "n" : null }, h))), rows)), more);
  }

  // ------------------------------------------------------------------ groups

  function controls() { // once the rows are there
    const location = document.getElementById("location");
    data.locations.forEach((l, i) => location.append(el("option", { value: i }, l.name)));
    const tier = document.getElementById("tier");
    for (const name of data.tiers.slice(1)) tier.append(el("option", { value: name }, `has ${name} copies`));
    let timer = null;
    for (const id of ["search", "folder"]) {
      document.getElementById(id).addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => filter(0), 200); });
    }
    for (const id of ["location", "tier", "sort"]) document.getElementById(id).addEventListener("change", () => filter(0));
    window.addEventListener("hashchange", jumpToHash);
    for (const input of document.querySelectorAll("#controls input, #controls select")) input.disabled = false;
  }

  function filter(toPage) {
    select();
    return render(toPage);
  }

  function select() { // the groups that pass the filters, in the chosen order
    const text = document.getElementById("search").value.trim().toLowerCase();
    const folderText = document.getElementById("folder").value.trim().toLowerCase();
    const location = document.getElementById("location").value;
    const tier = document.getElementById("tier").value;
    const tierNumber = tier ? data.tiers.indexOf(tier) : -1;
    const folderMatches = folderText ? new Set(rows.folders.flatMap((f, i) => (f.toLowerCase().includes(folderText) ? [i] : []))) : null;
    const textFolders = text ? new Set(rows.folders.flatMap((f, i) => (f.toLowerCase().includes(text) ? [i] : []))) : null;
    shown = [];
    rows.groups.forEach((g, number) => {
      const members = g[2];
      if (location !== "" && !members.some((m) => m[0] === Number(location))) return;
      if (tierNumber >= 0 && !members.some((m) => m[3] === tierNumber)) return;
      if (folderMatches && !members.some((m) => folderMatches.has(m[1]))) return;
      if (textFolders && !members.some((m) => textFolders.has(m[1]) || m[2].toLowerCase().includes(text))) return;
      shown.push(number);
    });
    const sort = document.getElementById("sort").value;
    if (sort === "wasted-asc") shown.reverse(); // the index is in wasted-bytes order, largest first
    if (sort === "copies") shown.sort((a, b) => rows.groups[b][2].length - rows.groups[a][2].length || a - b);
    document.getElementById("count").textContent = `${count(shown.length)} of ${count(data.group_count)} groups`;
  }

  let renders = 0;

  async function render(toPage) {
    const token = ++renders; // a later render (a quicker chunk) wins over one still waiting for its data
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    page = Math.min(Math.max(0, toPage), pages - 1);
    const numbers = shown.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    const list = document.getElementById("groups");
    try {
      await Promise.all([...new Set(numbers.map((n) => Math.floor(n / data.chunk_size)))].map(loadChunk));
    } catch (error) {
      if (token === renders) list.replaceChildren(el("p", { class: "error" }, error.message));
      return;
    }
    if (token !== renders) return;
    list.replaceChildren(...numbers.map(groupSection));
    if (!data.group_count) list.append(el("p", { class: "note", id: "no-groups" }, "No duplicate groups in the index."));
    else if (!numbers.length) list.append(el("p", { class: "note" }, "No group matches the filters."));
    for (const id of ["pager-top", "pager-bottom"]) document.getElementById(id).replaceChildren(...pager(pages));
    document.documentElement.dataset.rendered = String(Number(document.documentElement.dataset.rendered || 0) + 1);
  }

  function pager(pages) {
    const go = (to) => { render(to); document.getElementById("groups-title").scrollIntoView(); };
    const button = (label, to, disabled) => {
      const b = el("button", { type: "button" }, label);
      b.disabled = disabled;
      b.addEventListener("click", () => go(to));
      return b;
    };
    const jump = el("input", { type: "number", min: 1, max: pages, value: page + 1, "aria-label": "page", style: "width:6em" });
    jump.addEventListener("change", () => go(Number(jump.value) - 1));
    return [button("« first", 0, page === 0), button("‹ previous", page - 1, page === 0), el("span", {}, "page "), jump,
      el("span", {}, ` of ${count(pages)}`), button("next ›", page + 1, page >= pages - 1), button("last »", pages - 1, page >= pages - 1)];
  }

  function groupSection(number) {
    const group = detail(number);
    return el("section", { class: "group", id: `group-${number + 1}`, "data-group": number + 1 },
      el("h3", {}, `#${number + 1} `, el("span", { class: `badge ${group.kind}` }, group.kind),
        ` ${group.members.length} copies, wastes ${size(group.wasted)}`),
      el("div", { class: "members" }, group.members.map((m, i) => memberCard(m, i === 0))));
  }

  function memberCard(m, kept) {
    const picture = m.thumb
      ? el("img", { src: m.thumb, alt: m.path.split("/").pop(), decoding: "async" })
      : el("span", { class: "note" }, data.backend === "elasticsearch"
        ? "no thumbnail in the index (`deeplens es setup --keep-thumbnails`, then scan, keeps them)"
        : "no thumbnail in the index");
    const path = m.href ? el("a", { class: "path", href: m.href }, m.path) : el("span", { class: "path" }, m.path);
    return el("figure", { class: kept ? "member kept" : "member", "data-tier": m.tier, "data-path": m.path },
      el("div", { class: "thumb" }, picture),
      el("figcaption", {},
        el("div", {}, el("span", { class: `badge ${kept ? "kept" : m.tier}` }, kept ? "kept copy" : m.tier), " ", m.location),
        el("div", {}, path),
        el("div", {}, `${size(m.size)}, ${m.pixels ? `${count(m.pixels)} px (${(m.pixels / 1e6).toFixed(1)} MP)` : "pixels unknown"}`),
        m.modified ? el("div", {}, `modified ${m.modified.replace("T", " ")}`) : null,
        kept ? null : evidence(m.tier, m.evidence),
        planLine(m.plan, kept ? null : m.tier)));
  }

  function evidence(tier, e) {
    if (tier === "exact") return el("div", { class: "evidence" }, "the same bytes (sha256)");
    if (!e) return null;
    const parts = [`pHash ${e.hamming} of 64 bits apart`];
    if (e.cosine !== undefined) parts.push(`cosine ${e.cosine}`);
    const v = e.verification;
    if (v && v.rotation_deg !== undefined && v.rotation_deg !== null) {
      parts.push(`verified: ${v.inliers} inliers, rotation ${v.rotation_deg}°, scale ${v.scale}${v.mirror ? ", mirrored" : ""}`);
    }
    return el("div", { class: "evidence" }, parts.join("; "));
  }

  function planLine(p, tier) {
    if (!p) {
      return data.plan && tier && !data.plan.tiers.includes(tier)
        ? el("div", { class: "plan" }, `plan: no action (${tier} copies are not in the plan's tiers)`) : null;
    }
    if (p.keep) return el("div", { class: "plan keep" }, `plan: keep; rule "${p.rule}" decided: ${p.why}`);
    if (p.left_out) return el("div", { class: "plan" }, `plan: left alone: ${p.left_out}`);
    return el("div", { class: "plan" }, `plan: ${p.action} (${p.tier} copy)`);
  }

  function jumpToHash() {
    const match = /^#group-(\d+)$/.exec(location.hash);
    if (!match || !rows) return;
    const number = Number(match[1]) - 1;
    if (!shown.includes(number)) {
      for (const id of ["search", "folder", "location", "tier"]) document.getElementById(id).value = "";
      document.getElementById("sort").value = "wasted";
      select();
    }
    render(Math.floor(shown.indexOf(number) / PAGE_SIZE)).then(() => {
      const target = document.getElementById(`group-${number + 1}`);
      if (target) target.scrollIntoView();
    });
  }

  async function start() {
    const list = document.getElementById("groups");
    if (!data) {
      list.append(el("p", { class: "error" }, "The report holds no data."));
      return;
    }
    for (const input of document.querySelectorAll("#controls input, #controls select")) input.disabled = true;
    try {
      if (data.group_count) await loadChunk(0); // the first page and the largest groups
    } catch (error) {
      list.append(el("p", { class: "error" }, error.message));
      return;
    }
    overview();
    shown = [...Array(data.group_count).keys()]; // the report's order, until the rows allow filters
    document.getElementById("count").textContent = `${count(data.group_count)} groups; filters are loading`;
    await render(0);
    window.deeplensFirstRenderMs = performance.now(); // read by bench/report_size.py
    document.documentElement.dataset.ready = "1";
    try {
      await loadRows();
    } catch (error) {
      document.getElementById("count").textContent = error.message;
      return;
    }
    controls();
    select();
    if (location.hash) jumpToHash();
    window.deeplensFiltersMs = performance.now();
    document.documentElement.dataset.filters = "1";
  }

  document.addEventListener("DOMContentLoaded", start);
  return { index, chunk, rows: setRows };
})();
