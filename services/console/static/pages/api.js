// The API reference: the gateway's merged OpenAPI document (GET /api/openapi.json on the
// admin side: every operation of every service), rendered by service: method, path,
// summary, who may call it, parameters, request body and every answer with its schema.
// The document needs no token, so neither does this page.

import { paths } from "../contract.js";
import { h, showStatus, statusLine } from "../dom.js";

const MAX_DEPTH = 6;
const SCHEMA_REF = "#/components/schemas/";

// The component a "$ref" names, or the schema itself.
function resolve(doc, node) {
  let seen = 0;
  while (node?.$ref && seen++ < 10) {
    const [prefix, name] = [node.$ref.slice(0, node.$ref.lastIndexOf("/") + 1), node.$ref.split("/").pop()];
    const group = prefix.replace("#/components/", "").replace(/\/$/, "");
    node = doc.components?.[group]?.[name];
  }
  return node ?? {};
}

function refName(schema) {
  return schema?.$ref?.startsWith(SCHEMA_REF) ? schema.$ref.slice(SCHEMA_REF.length) : null;
}

// One line for a schema: its type and the bounds a value must keep.
export function typeText(doc, schema) {
  if (!schema) return "";
  const name = refName(schema);
  if (name) return name;
  if (schema.anyOf) return schema.anyOf.map((s) => typeText(doc, s)).join(" | ");
  if ("const" in schema) return JSON.stringify(schema.const);
  const parts = [];
  if (schema.enum) parts.push(schema.enum.map((v) => JSON.stringify(v)).join(" | "));
  else if (schema.type === "array") parts.push(`array of ${typeText(doc, schema.items) || "any"}`);
  else parts.push(schema.type ?? "any");
  if (schema.format) parts.push(schema.format);
  const bounds = [
    ["minimum", "≥"],
    ["maximum", "≤"],
    ["minLength", "length ≥"],
    ["maxLength", "length ≤"],
    ["minItems", "items ≥"],
    ["maxItems", "items ≤"],
    ["minProperties", "fields ≥"],
  ];
  for (const [key, sign] of bounds) if (key in schema) parts.push(`${sign} ${schema[key]}`);
  if (schema.pattern) parts.push(`pattern ${schema.pattern}`);
  if ("default" in schema) parts.push(`default ${JSON.stringify(schema.default)}`);
  return parts.join(", ");
}

// A schema as a nested list of its fields ("*" marks the required ones).
function schemaTree(doc, schema, depth = 0) {
  const shown = resolve(doc, schema);
  const line = h("code", { class: "type" }, typeText(doc, schema));
  if (depth >= MAX_DEPTH) return line;
  const props = shown.properties ?? {};
  const names = Object.keys(props);
  const items = shown.type === "array" ? resolve(doc, shown.items) : null;
  if (!names.length && !(items?.properties && Object.keys(items.properties).length)) return line;
  const fields = names.length ? shown : items;
  const required = new Set(fields.required ?? []);
  return h(
    "div",
    {},
    line,
    fields.additionalProperties === false ? h("span", { class: "muted" }, " (no other fields)") : null,
    h(
      "ul",
      { class: "schema" },
      Object.entries(fields.properties).map(([field, sub]) =>
        h(
          "li",
          { "data-field": field },
          h("span", { class: "field-name" }, field + (required.has(field) ? " *" : "")),
          " ",
          schemaTree(doc, sub, depth + 1),
          sub.description ? h("span", { class: "muted" }, ` ${sub.description}`) : null,
        ),
      ),
    ),
  );
}

function parametersTable(doc, params) {
  if (!params?.length) return null;
  return h(
    "table",
    { class: "list params" },
    h("thead", {}, h("tr", {}, ["Parameter", "In", "Schema", ""].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      params.map((raw) => {
        const p = resolve(doc, raw);
        return h(
          "tr",
          { "data-param": p.name },
          h("td", {}, h("code", {}, p.name + (p.required ? " *" : ""))),
          h("td", {}, p.in),
          h("td", {}, h("code", {}, typeText(doc, p.schema))),
          h("td", { class: "muted" }, p.description ?? ""),
        );
      }),
    ),
  );
}

function answers(doc, responses) {
  return h(
    "ul",
    { class: "answers" },
    Object.entries(responses ?? {}).map(([status, raw]) => {
      const answer = resolve(doc, raw);
      const content = Object.entries(answer.content ?? {});
      return h(
        "li",
        { "data-status": status },
        h("span", { class: `badge status-${status[0]}xx` }, status),
        " ",
        answer.description ?? "",
        // Successes are shown field by field; every refusal is the one Error shape.
        content.map(([media, body]) =>
          h(
            "div",
            { class: "media" },
            h("span", { class: "muted" }, media),
            " ",
            status.startsWith("2") ? schemaTree(doc, body.schema) : h("code", { class: "type" }, typeText(doc, body.schema)),
          ),
        ),
        answer.links
          ? h("div", { class: "muted" }, "Links: ", Object.values(answer.links).map((l) => l.operationId).join(", "))
          : null,
      );
    }),
  );
}

function who(op) {
  if (op["x-required-role"]) return `role ${op["x-required-role"]}`;
  if (!op.security?.length) return "no token";
  return Object.keys(op.security[0]).join(", ");
}

function operationCard(doc, path, method, op) {
  const body = op.requestBody?.content?.["application/json"]?.schema;
  return h(
    "details",
    { class: "operation card", "data-operation": op.operationId },
    h(
      "summary",
      {},
      h("span", { class: `method method-${method}` }, method.toUpperCase()),
      " ",
      h("code", { class: "path" }, path),
      " ",
      h("span", {}, op.summary ?? ""),
      " ",
      h("span", { class: "badge" }, who(op)),
    ),
    op.description ? h("p", {}, op.description) : null,
    parametersTable(doc, op.parameters),
    body
      ? h("div", {}, h("h3", {}, `Request body${op.requestBody.required ? "" : " (optional)"}`), schemaTree(doc, body))
      : null,
    h("h3", {}, "Answers"),
    answers(doc, op.responses),
  );
}

function byService(doc) {
  const groups = new Map((doc.tags ?? []).map((tag) => [tag.name, { tag, operations: [] }]));
  for (const [path, methods] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(methods)) {
      const name = op.tags?.[0] ?? "other";
      if (!groups.has(name)) groups.set(name, { tag: { name }, operations: [] });
      groups.get(name).operations.push([path, method, op]);
    }
  }
  return [...groups.values()].filter((g) => g.operations.length);
}

export async function apiPage({ root, signal }) {
  const status = statusLine();
  const filter = h("input", { type: "search", placeholder: "Filter by path or summary", "aria-label": "Filter operations" });
  const list = h("div", { id: "operations" });
  root.append(h("h1", {}, "API"), h("div", { class: "toolbar" }, filter, h("a", { href: paths.openapi }, "openapi.json")), status, list);
  const resp = await fetch(paths.openapi, { signal, headers: { Accept: "application/json" } });
  if (!resp.ok) {
    showStatus(status, `The document could not be read (HTTP ${resp.status}).`, "error");
    return;
  }
  const doc = await resp.json();
  const count = Object.values(doc.paths ?? {}).reduce((n, methods) => n + Object.keys(methods).length, 0);
  showStatus(status, `${doc.info?.title ?? "API"}, version ${doc.info?.version ?? "?"}: ${count} operations.`, "ok");
  for (const { tag, operations } of byService(doc)) {
    list.append(
      h(
        "section",
        { class: "service", "data-service": tag.name },
        h("h2", {}, tag.description ?? tag.name),
        operations.map(([path, method, op]) => operationCard(doc, path, method, op)),
      ),
    );
  }
  filter.addEventListener("input", () => {
    const words = filter.value.trim().toLowerCase();
    for (const card of list.querySelectorAll("details.operation")) {
      card.hidden = Boolean(words) && !card.querySelector("summary").textContent.toLowerCase().includes(words);
    }
  });
}
