// The overview's charts (#chart-data) and the trend lines of the overview and a leader's page
// (#trend-data, trend.js), drawn from the JSON the page carries (no inline script: CSP script-src 'self').
(function () {
  if (!window.echarts) return;
  var palette = { red: "#d93025", yellow: "#f2b400", green: "#1e8e3e" };
  var charts = [];

  function draw(id, option) {
    var el = document.getElementById(id);
    if (!el) return;
    var chart = echarts.init(el, null, { renderer: "canvas" });
    chart.setOption(option);
    charts.push(chart);
    el.setAttribute("data-rendered", "1");
  }
  window.pipelineCharts = { draw: draw, palette: palette };
  window.addEventListener("resize", function () { charts.forEach(function (ch) { ch.resize(); }); });

  var holder = document.getElementById("chart-data");
  if (!holder) return;
  var data = JSON.parse(holder.textContent);
  var c = data.colors;
  draw("chart-colors", {
    tooltip: { trigger: "item", formatter: "{b}：{c} 个（{d}%）" },
    legend: { bottom: 0 },
    series: [{
      type: "pie", radius: ["40%", "70%"], label: { formatter: "{b}\n{c}" },
      data: [
        { name: "红牌", value: c.red, itemStyle: { color: palette.red } },
        { name: "黄牌", value: c.yellow, itemStyle: { color: palette.yellow } },
        { name: "绿牌", value: c.green, itemStyle: { color: palette.green } }
      ]
    }]
  });

  var r = data.rates;
  var pct = { formatter: function (v) { return v == null ? "—" : v + "%"; } };
  draw("chart-rates", {
    tooltip: { trigger: "axis", valueFormatter: pct.formatter },
    legend: { top: 0 },
    grid: { left: 48, right: 16, bottom: 64, top: 36 },
    xAxis: { type: "category", data: r.groups, axisLabel: { interval: 0, rotate: 30 } },
    yAxis: { type: "value", max: 100, axisLabel: { formatter: "{value}%" } },
    series: [
      { name: "开工率", type: "bar", data: r.start_rate, itemStyle: { color: "#1a73e8" } },
      { name: "竣工率", type: "bar", data: r.completion_rate, itemStyle: { color: "#9334e6" } },
      { name: "入统率", type: "bar", data: r.stats_rate, itemStyle: { color: "#12b5cb" } }
    ]
  });

  draw("chart-investment", {
    tooltip: { trigger: "axis", valueFormatter: pct.formatter },
    legend: { top: 0 },
    grid: { left: 48, right: 16, bottom: 64, top: 36 },
    xAxis: { type: "category", data: r.groups, axisLabel: { interval: 0, rotate: 30 } },
    yAxis: { type: "value", axisLabel: { formatter: "{value}%" } },
    series: [
      {
        name: "投资完成率", type: "bar", data: r.investment, itemStyle: { color: "#1e8e3e" },
        markLine: {
          symbol: "none", lineStyle: { color: "#d93025", type: "dashed" },
          label: { formatter: "序时进度 " + r.time_progress + "%", position: "insideEndTop" },
          data: [{ yAxis: r.time_progress, name: "序时进度" }]
        }
      },
      { name: "序时进度", type: "line", data: r.groups.map(function () { return r.time_progress; }),
        symbol: "none", lineStyle: { color: "#d93025", type: "dashed" }, itemStyle: { color: "#d93025" } }
    ]
  });
})();
