"use strict";
// Pictures are embedded once per page (JSON above) and referenced by key.
var SPRAY_IMAGES = (function () {
  var data = document.getElementById("spray-images");
  return data ? JSON.parse(data.textContent) : {};
})();
document.querySelectorAll("img[data-img]").forEach(function (img) {
  var uri = SPRAY_IMAGES[img.getAttribute("data-img")];
  if (uri) img.src = uri;
});
// Sortable ranking table.
(function () {
  var table = document.getElementById("ranking-table");
  if (!table) return;
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("sorted-asc");
      Array.prototype.forEach.call(headers, function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
      th.classList.add(asc ? "sorted-asc" : "sorted-desc");
      var numeric = th.getAttribute("data-type") === "num";
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        var r = numeric ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
        return asc ? r : -r;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
})();
// Scatter plots: the i-th circle is the i-th point of the class's JSON.
(function () {
  document.querySelectorAll(".chart.scatter").forEach(function (chart) {
    var data = document.getElementById(chart.getAttribute("data-points"));
    if (!data) return;
    var points = JSON.parse(data.textContent);
    var prefix = chart.getAttribute("data-prefix") || "";
    var preview = chart.parentNode.querySelector(".preview");
    var pics = preview.querySelector(".pics");
    var text = preview.querySelector(".text");
    var circles = chart.querySelectorAll("circle");
    function show(i) {
      var p = points[i];
      if (!p) return;
      while (pics.firstChild) pics.removeChild(pics.firstChild);
      [p.thumb, p.heat].forEach(function (key) {
        var uri = key && SPRAY_IMAGES[key];
        if (!uri) return;
        var img = document.createElement("img");
        img.src = uri;
        img.alt = "";
        pics.appendChild(img);
      });
      text.textContent = p.id + " — cluster " + p.cluster + " — logit " +
        (p.logit === null || p.logit === undefined ? "?" : Number(p.logit).toFixed(3)) + " — predicted " + p.predicted +
        " — labels " + p.labels + " — " + prefix + p.path + (p.thumb ? "" : " (no picture embedded for this point)");
    }
    circles.forEach(function (circle, i) {
      circle.addEventListener("mouseenter", function () { show(i); });
      circle.addEventListener("click", function () { show(i); });
    });
  });
})();
