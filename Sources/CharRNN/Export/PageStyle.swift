// Export/PageStyle.swift — the look shared by `charrnn serve`'s page (CharRNNServer/Page.swift) and
// the exported HTML page (HTMLExport): one stylesheet, so both pages look the same. Plain CSS, no
// fonts or images to fetch; light and dark follow the system.

/// Styles and page pieces shared by the served and the exported page.
package enum PageStyle {
    /// The stylesheet (the contents of a <style> element).
    package static let css = #"""
  :root { color-scheme: light dark; --fg: #1d1d1f; --bg: #fafafa; --muted: #6e6e73; --accent: #0a66c2; --box: #fff; --line: #d2d2d7; }
  @media (prefers-color-scheme: dark) { :root { --fg: #e8e8ed; --bg: #161617; --muted: #98989d; --accent: #4c9aff; --box: #1f1f21; --line: #3a3a3c; } }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  main { max-width: 860px; margin: 0 auto; padding: 24px 16px 48px; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  #model { color: var(--muted); font-size: 13px; margin: 0 0 16px; }
  textarea, #output { width: 100%; font: 14px/1.5 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; color: var(--fg);
    background: var(--box); border: 1px solid var(--line); border-radius: 8px; padding: 10px; }
  textarea { height: 96px; resize: vertical; }
  #output { min-height: 240px; white-space: pre-wrap; word-break: break-word; margin-top: 14px; }
  #output .prompt { color: var(--muted); }
  .controls { display: flex; flex-wrap: wrap; gap: 14px 22px; align-items: center; margin: 12px 0 0; }
  label { display: flex; align-items: center; gap: 8px; font-size: 13px; }
  input[type=range] { width: 120px; }
  input[type=number], input[type=text] { width: 84px; padding: 4px; background: var(--box); color: var(--fg); border: 1px solid var(--line); border-radius: 6px; }
  output { min-width: 2.6em; font-variant-numeric: tabular-nums; }
  button { font: inherit; padding: 7px 18px; border-radius: 8px; border: 1px solid var(--accent); cursor: pointer; }
  #start { background: var(--accent); color: #fff; }
  #stop { background: transparent; color: var(--accent); }
  button:disabled { opacity: .45; cursor: default; }
  #status { color: var(--muted); font-size: 13px; margin-left: auto; }
"""#
}
