"use strict";
// Renders /openapi.json: every operation with its parameters, body, answers and
// examples, then the schemas. Everything from the document is written as text.
(function () {
  const $ = (id) => document.getElementById(id);
  let doc = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  // `code` and **bold** in descriptions, as elements holding text.
  function inline(text) {
    const out = [];
    String(text || "").split(/(`[^`]*`|\*\*[^*]+\*\*)/).forEach((part) => {
      if (part.startsWith("`") && part.endsWith("`") && part.length > 1) out.push(el("code", {}, part.slice(1, -1)));
      else if (part.startsWith("**") && part.endsWith("**") && part.length > 3) out.push(el("strong", {}, part.slice(2, -2)));
      else if (part) out.push(part);
    });
    return out;
  }
  function prose(text) {
    return el("div", { class: "desc" }, String(text || "").split(/\n\s*\n/).map((p) => el("p", {}, inline(p))));
  }

  function resolve(node) {
    let seen = 0;
    while (node && node.$ref && seen++ < 20) {
      node = node.$ref.replace(/^#\//, "").split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
        .reduce((at, key) => (at ? at[key] : undefined), doc);
    }
    return node || {};
  }
  const refName = (s) => (s && s.$ref ? s.$ref.split("/").pop() : null);

  function typeOf(schema) {
    if (!schema) return "";
    if (schema.$ref) return refName(schema);
    if (schema.oneOf) return schema.oneOf.map(typeOf).join(" | ");
    if (schema.allOf) return schema.allOf.map(typeOf).join(" & ");
    if ("const" in schema) return JSON.stringify(schema.const);
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    const t = [].concat(schema.type || "any").join(" | ");
    if (schema.type === "array") return typeOf(schema.items) + "[]";
    return t + (schema.format ? " (" + schema.format + ")" : "");
  }

  function bounds(schema) {
    const b = [];
    if (schema.minimum !== undefined || schema.maximum !== undefined) b.push((schema.minimum ?? "") + "–" + (schema.maximum ?? ""));
    if (schema.maxLength !== undefined) b.push("≤ " + schema.maxLength + " chars");
    if (schema.pattern) b.push("pattern " + schema.pattern);
    if (schema.default !== undefined) b.push("default " + JSON.stringify(schema.default));
    return b.join("; ");
  }

  // The fields of an object schema (following $ref and allOf), as a table.
  function fields(schema, depth) {
    schema = resolve(schema);
    const props = {}, required = new Set(schema.required || []);
    (schema.allOf || []).forEach((part) => {
      const r = resolve(part);
      Object.assign(props, r.properties || {});
      (r.required || []).forEach((n) => required.add(n));
    });
    Object.assign(props, schema.properties || {});
    const names = Object.keys(props);
    if (!names.length) {
      if (schema.oneOf) return el("p", {}, "One of: ", typeOf(schema));
      return el("p", { class: "type" }, typeOf(schema));
    }
    return el("table", { class: "schema" },
      el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "about")),
      names.map((name) => {
        const p = props[name];
        return el("tr", {},
          el("td", { class: "field" }, name, required.has(name) ? el("span", { class: "req" }, " *") : null),
          el("td", { class: "type" }, typeOf(p)),
          el("td", {}, inline(resolve(p).description || p.description || ""), bounds(resolve(p)) ? el("div", { class: "type" }, bounds(resolve(p))) : null));
      }));
  }

  function examplesOf(media) {
    const out = [];
    if (!media) return out;
    if (media.example !== undefined) out.push(["example", media.example]);
    for (const [name, ex] of Object.entries(media.examples || {})) out.push([name + (ex.summary ? ": " + ex.summary : ""), ex.value]);
    if (!out.length) {
      const s = resolve(media.schema);
      if (s.examples && s.examples.length) out.push(["example", s.examples[0]]);
    }
    return out;
  }
  const pretty = (v) => el("pre", {}, JSON.stringify(v, null, 2));

  function operation(path, method, op, shared) {
    const params = (shared || []).concat(op.parameters || []).map(resolve);
    const body = el("div", { class: "body" });
    if (op.description) body.append(prose(op.description));
    body.append(el("p", { class: "type" }, op.security && op.security.length === 0
      ? "No API key." : "Authorization: Bearer <key>, or X-API-Key: <key>."));
    if (params.length) {
      body.append(el("h3", {}, "Parameters"), el("table", {},
        el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "about")),
        params.map((p) => el("tr", {}, el("td", { class: "field" }, p.name, p.required ? el("span", { class: "req" }, " *") : null),
          el("td", {}, p.in), el("td", { class: "type" }, typeOf(p.schema)), el("td", {}, inline(p.description || ""))))));
    }
    if (op.requestBody) {
      const media = (op.requestBody.content || {})["application/json"];
      body.append(el("h3", {}, "Request body"), fields(media && media.schema));
      examplesOf(media).forEach(([name, value]) => body.append(el("h4", {}, name), pretty(value)));
    }
    body.append(el("h3", {}, "Responses"));
    for (const [status, raw] of Object.entries(op.responses || {})) {
      const r = resolve(raw);
      const media = (r.content || {})["application/json"];
      body.append(el("h4", {}, el("span", { class: "status s" + status[0] }, status), " ", inline(r.description || "")));
      if (r.headers) {
        const names = Object.keys(r.headers);
        if (names.length) body.append(el("p", { class: "type" }, "Headers: " + names.join(", ")));
      }
      if (media && status.startsWith("2")) body.append(fields(media.schema));
      examplesOf(media).forEach(([name, value]) => body.append(el("div", { class: "type" }, name), pretty(value)));
    }
    const id = op.operationId || (method + path);
    const node = el("details", { class: "op", id: id, "data-search": (method + " " + path + " " + (op.summary || "") + " " + (op.tags || []).join(" ")).toLowerCase() },
      el("summary", {}, el("span", { class: "method " + method }, method), el("span", { class: "path" }, path), el("span", { class: "summary" }, op.summary || "")),
      body);
    return node;
  }

  function render() {
    const info = doc.info || {};
    $("intro").replaceChildren(el("h2", {}, (info.title || "API") + " " + (info.version || "")), prose(info.description || ""),
      el("p", { class: "type" }, "Servers: ", inline((doc.servers || []).map((s) => "`" + s.url + "`" + (s.description ? " (" + s.description.replace(/`/g, "") + ")" : "")).join(", "))));
    const byTag = new Map();
    const add = (tag, item) => { if (!byTag.has(tag)) byTag.set(tag, []); byTag.get(tag).push(item); };
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of ["get", "post", "put", "patch", "delete"]) {
        if (item[method]) add((item[method].tags || ["Other"])[0], operation(path, method, item[method], item.parameters));
      }
    }
    for (const [name, item] of Object.entries(doc.webhooks || {})) {
      for (const method of Object.keys(item)) add("Notifications to your webhook_url", operation("(your webhook_url) " + name, method, item[method]));
    }
    const tags = new Map((doc.tags || []).map((t) => [t.name, t.description]));
    $("operations").replaceChildren(...[...byTag.entries()].map(([tag, ops]) =>
      el("div", { class: "tag" }, el("h2", {}, tag), tags.get(tag) ? prose(tags.get(tag)) : null, ops)));
    $("toc").replaceChildren(...[...byTag.values()].flat().map((node) => {
      const a = el("a", { href: "#" + node.id }, node.querySelector(".method").textContent.toUpperCase() + " " + node.querySelector(".path").textContent);
      a.addEventListener("click", () => { node.open = true; });
      return a;
    }));
    const schemas = (doc.components || {}).schemas || {};
    $("schemas").replaceChildren(el("h2", {}, "Schemas"), ...Object.entries(schemas).map(([name, s]) =>
      el("details", { class: "op", id: "schema-" + name }, el("summary", {}, el("span", { class: "path" }, name), el("span", { class: "summary" }, inline(s.description || ""))),
        el("div", { class: "body" }, fields(s), (s.examples || []).slice(0, 1).map(pretty)))));
    if (location.hash) { const target = document.getElementById(location.hash.slice(1)); if (target && target.tagName === "DETAILS") target.open = true; }
  }

  $("filter").addEventListener("input", () => {
    const q = $("filter").value.trim().toLowerCase();
    document.querySelectorAll("#operations details.op").forEach((node) => { node.hidden = q !== "" && !node.dataset.search.includes(q); });
  });

  fetch("/openapi.json", { headers: { Accept: "application/json" } })
    .then((r) => { if (!r.ok) throw new Error("GET /openapi.json answered " + r.status); return r.json(); })
    .then((json) => { doc = json; render(); $("notice").textContent = ""; })
    .catch((err) => { $("notice").textContent = String(err.message || err); $("notice").className = "error"; });
})();
