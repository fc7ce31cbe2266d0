'use strict'

// `node bench/publish.js [results.json]` (default bench/results/results.json): makes a saved run the
// published one, without running the benchmark again; `npm run bench` calls the same functions at
// the end of a run. It writes:
//   bench/results/  results.json (a copy, when the run was saved elsewhere), results.md (the full
//                   table) and chart.svg
//   docs/benchmarks.md  the full section (bench/README-section.md, the full table, the chart)
//   README.md  the short table
// Each document's part sits between `<!-- section:performance -->` markers; the rest is left alone.

const fs = require('node:fs')
const path = require('node:path')
const { summarize, markdown, shortMarkdown, svg } = require('./report')

const ROOT = path.join(__dirname, '..')
const RESULTS_DIR = path.join(__dirname, 'results')
const START = '<!-- section:performance -->'
const END = '<!-- /section:performance -->'

/** Saves one run in `dir`: results.json ({ summary, raw }), results.md and chart.svg. */
function saveResults (dir, results) {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'results.json'), JSON.stringify(results, null, 2) + '\n')
  fs.writeFileSync(path.join(dir, 'results.md'), markdown(results.summary) + '\n')
  fs.writeFileSync(path.join(dir, 'chart.svg'), svg(results.summary))
}

/** Replaces what sits between `file`'s performance markers with `body`; false when it has none. */
function replaceSection (file, body) {
  const text = fs.readFileSync(file, 'utf8')
  const a = text.indexOf(START)
  const b = text.indexOf(END)
  if (a < 0 || b < a) return false
  fs.writeFileSync(file, text.slice(0, a) + `${START}\n${body}\n${END}` + text.slice(b + END.length))
  return true
}

/** Writes the full section into docs/benchmarks.md and the short table into README.md. */
function writeDocs (summary, log) {
  const intro = fs.readFileSync(path.join(__dirname, 'README-section.md'), 'utf8').trim()
  const pages = [
    ['docs/benchmarks.md', `${intro}\n\n${markdown(summary, { chart: '../bench/results/chart.svg' })}`],
    ['README.md', shortMarkdown(summary)],
  ]
  for (const [name, body] of pages) {
    const done = replaceSection(path.join(ROOT, name), body)
    log(done ? `${name}: performance section updated` : `${name} has no performance markers: left alone`)
  }
}

/** Publishes a saved run: its results become bench/results/'s, and the documents show them. */
function publish (file, log) {
  const results = JSON.parse(fs.readFileSync(file, 'utf8'))
  // The summary is derived again, as a run derives it, so a change to report.js shows too.
  if (results.raw) results.summary = summarize(results.raw)
  if (!results.summary) throw new Error(`${file} holds no benchmark results (no summary, no raw)`)
  saveResults(RESULTS_DIR, results)
  writeDocs(results.summary, log)
}

module.exports = { saveResults, writeDocs }

if (require.main === module) {
  const file = path.resolve(process.argv[2] || path.join(RESULTS_DIR, 'results.json'))
  try {
    publish(file, (line) => process.stdout.write(line + '\n'))
  } catch (err) {
    console.error(err)
    process.exit(1)
  }
}
