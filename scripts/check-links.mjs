#!/usr/bin/env node
// Checks the links of README.md and docs/*.md: every relative link must lead to a file or folder
// of the repository, and every `#anchor` (in the same file or in another Markdown file) to a
// heading there, under GitHub's rules for heading anchors. Links to web addresses are not
// fetched. Code blocks and inline code are skipped, as GitHub renders no links there.
//
// Usage: node scripts/check-links.mjs   (`pnpm check:links`; exits 1 listing the broken links)
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The Markdown files checked: README.md and every docs/*.md. */
function documents() {
  const docs = existsSync(join(root, "docs"))
    ? readdirSync(join(root, "docs"))
        .filter((f) => f.endsWith(".md"))
        .sort()
        .map((f) => join(root, "docs", f))
    : [];
  return [join(root, "README.md"), ...docs];
}

/**
 * The lines of a Markdown file with fenced code blocks blanked (line numbers are kept), so that
 * neither headings nor links are looked for inside them.
 */
function proseLines(text) {
  const lines = text.split(/\r?\n/);
  let fence = null;
  return lines.map((line) => {
    const m = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (fence === null) {
      if (m) {
        fence = m[1];
        return "";
      }
      return line;
    }
    if (m && m[1][0] === fence[0] && m[1].length >= fence.length && line.trim() === m[1]) fence = null;
    return "";
  });
}

/** Removes inline code spans (their text is kept for headings, dropped for links). */
function withoutCode(line, keepText) {
  return line.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_all, _ticks, inner) => (keepText ? inner.trim() : ""));
}

/** GitHub's anchor for a heading's text (github-slugger): lower case, punctuation removed, spaces to dashes. */
function slug(heading) {
  const text = withoutCode(heading, true)
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // links and images: their text
    .replace(/<[^>]+>/g, "") // inline HTML
    .replace(/[*~]/g, "") // emphasis markers (underscores are kept, as GitHub does inside words)
    .trim();
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

const anchorCache = new Map();

/** Every anchor a Markdown file offers: its headings (numbered when repeated) and HTML ids. */
function anchorsOf(file) {
  if (anchorCache.has(file)) return anchorCache.get(file);
  const anchors = new Set();
  const seen = new Map();
  const add = (base) => {
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  };
  const lines = proseLines(readFileSync(file, "utf8"));
  lines.forEach((line, i) => {
    const atx = /^ {0,3}#{1,6}(?:\s+(.*?))?(?:\s+#+)?\s*$/.exec(line);
    if (atx) {
      add(slug(atx[1] ?? ""));
    } else if (i + 1 < lines.length && line.trim() !== "" && /^ {0,3}(=+|-+)\s*$/.test(lines[i + 1])) {
      // A setext heading: a paragraph line underlined with = or -, not a list item or table row.
      if (!/^\s*([-*+]|\d+[.)])\s/.test(line) && !line.includes("|")) add(slug(line));
    }
    for (const m of line.matchAll(/<[a-z][^>]*\s(?:id|name)=["']([^"']+)["']/gi)) anchors.add(m[1]);
  });
  anchorCache.set(file, anchors);
  return anchors;
}

/** The link targets of one line: inline links and images, and reference definitions. */
function targetsOf(line) {
  const prose = withoutCode(line, false);
  const out = [];
  // [text](target "title") and ![alt](target); the text may hold one level of brackets.
  for (const m of prose.matchAll(/!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g)) {
    out.push(m[1].replace(/^<|>$/g, ""));
  }
  const def = /^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/.exec(prose);
  if (def) out.push(def[1].replace(/^<|>$/g, ""));
  for (const m of prose.matchAll(/<(?:a|img)\s[^>]*(?:href|src)=["']([^"']+)["']/gi)) out.push(m[1]);
  return out;
}

const broken = [];
let checked = 0;
for (const file of documents()) {
  if (!existsSync(file)) {
    broken.push(`${relative(root, file)}: missing`);
    continue;
  }
  proseLines(readFileSync(file, "utf8")).forEach((line, i) => {
    for (const target of targetsOf(line)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) continue; // a web address
      checked++;
      const where = `${relative(root, file)}:${i + 1}: ${target}`;
      const hash = target.indexOf("#");
      const path = decodeURI(hash === -1 ? target : target.slice(0, hash));
      const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1));
      const dest = path === "" ? file : resolve(dirname(file), path);
      if (!dest.startsWith(root)) {
        broken.push(`${where}: leads outside the repository`);
        continue;
      }
      if (!existsSync(dest)) {
        broken.push(`${where}: no such file or folder (${relative(root, dest)})`);
        continue;
      }
      if (anchor !== null && anchor !== "" && dest.endsWith(".md") && !anchorsOf(dest).has(anchor)) {
        broken.push(`${where}: no heading with anchor #${anchor} in ${relative(root, dest)}`);
      }
    }
  });
}

if (broken.length > 0) {
  console.error(`check-links: ${broken.length} broken link(s) of ${checked} checked:`);
  for (const b of broken) console.error(`  ${b}`);
  process.exit(1);
}
console.log(`check-links: ${checked} relative links in README.md and docs/*.md, all resolve`);
