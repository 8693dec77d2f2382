// Trend lines (SPEC §9): colour counts and the three rates at each month end, from the JSON the
// page carries in #trend-data; drawn with charts.js's helper (load charts.js first).
(function () {
  var holder = document.getElementById("trend-data");
  if (!holder || !window.pipelineCharts) return;
  var t = JSON.parse(holder.textContent);
  var draw = window.pipelineCharts.draw, palette = window.pipelineCharts.palette;
  var pct = function (v) { return v == null ? "—" : v + "%"; };

  function line(name, values, color, dashed) {
    return { name: name, type: "line", data: values, connectNulls: true, itemStyle: { color: color },
             lineStyle: { color: color, type: dashed ? "dashed" : "solid" } };
  }

  var axis = { type: "category", data: t.months, boundaryGap: false, axisLabel: { rotate: 30 } };
  draw("trend-colors", {
    tooltip: { trigger: "axis" },
    legend: { top: 0 },
    grid: { left: 48, right: 16, bottom: 56, top: 36 },
    xAxis: axis,
    yAxis: { type: "value", minInterval: 1 },
    series: [line("红牌", t.red, palette.red), line("黄牌", t.yellow, palette.yellow),
             line("绿牌", t.green, palette.green)]
  });
  draw("trend-rates", {
    tooltip: { trigger: "axis", valueFormatter: pct },
    legend: { top: 0 },
    grid: { left: 48, right: 16, bottom: 56, top: 56 },
    xAxis: axis,
    yAxis: { type: "value", max: 100, axisLabel: { formatter: "{value}%" } },
    series: [line("开工率", t.start_rate, "#1a73e8"), line("竣工率", t.completion_rate, "#9334e6"),
             line("入统率", t.stats_rate, "#12b5cb"), line("投资完成率", t.investment, "#5f6368", true)]
  });
})();
