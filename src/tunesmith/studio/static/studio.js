// tunesmith studio: live training curves from the run's own log (server-sent events), drawn as SVG.
// No library, nothing fetched from elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function chart(svg, points, label) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = 560, height = 220, pad = 42;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const title = document.createElementNS(SVG, "title");
  title.textContent = `${label}: ${points.length} points`;
  svg.appendChild(title);
  if (points.length === 0) return;
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const sx = x => pad + (x - x0) / (x1 - x0) * (width - 2 * pad);
  const sy = y => height - pad + (y0 - y) / (y1 - y0) * (height - 2 * pad);
  const axis = document.createElementNS(SVG, "path");
  axis.setAttribute("d", `M${pad},${pad / 2} V${height - pad} H${width - pad / 2}`);
  axis.setAttribute("class", "axis");
  svg.appendChild(axis);
  const labels = [[pad - 4, sy(y1) + 4, y1.toPrecision(3), "end"], [pad - 4, sy(y0) + 4, y0.toPrecision(3), "end"],
                  [sx(x0), height - pad + 16, `step ${x0}`, "start"], [sx(x1), height - pad + 16, `${x1}`, "end"]];
  for (const [x, y, text, anchor] of labels) {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor);
    t.textContent = text;
    svg.appendChild(t);
  }
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "));
  line.setAttribute("class", "curve");
  svg.appendChild(line);
  for (const p of points) {
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", sx(p[0]).toFixed(1)); dot.setAttribute("cy", sy(p[1]).toFixed(1)); dot.setAttribute("r", 2.5);
    dot.setAttribute("class", "point");
    svg.appendChild(dot);
  }
}

function live(box) {
  const metric = box.dataset.metric;
  const loss = [], score = [];
  const lossSvg = box.querySelector("svg.loss"), metricSvg = box.querySelector("svg.metric");
  const said = box.querySelector(".live-status");
  const draw = () => {
    chart(lossSvg, loss, "training loss");
    chart(metricSvg, score, `validation ${metric}`);
    said.textContent = `${loss.length} loss points, ${score.length} validations`;
  };
  const source = new EventSource(box.dataset.events);
  source.onmessage = event => {
    const record = JSON.parse(event.data);
    if (record.event === "train" && typeof record.loss === "number") loss.push([record.step, record.loss]);
    if (record.event === "validation" && typeof record[metric] === "number") score.push([record.step, record[metric]]);
    draw();
  };
  source.addEventListener("reset", () => { loss.length = 0; score.length = 0; draw(); });
  source.addEventListener("end", event => {
    source.close();
    if (box.dataset.status === "running" || box.dataset.status === "queued") {
      said.textContent = `the run ended (${event.data}); loading its report`;
      setTimeout(() => window.location.reload(), 500);
    }
  });
  draw();
}

function compareButton() {
  const form = document.getElementById("compare-form");
  if (!form) return;
  const button = form.querySelector("button");
  const update = () => { button.disabled = form.querySelectorAll("input[name=run]:checked").length < 2; };
  form.addEventListener("change", update);
  update();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".live").forEach(live);
  compareButton();
});
