// study_report.html's behaviour: pictures from the embedded data, one click per example to show
// the test examples it influences, and the table of every reported item (filter, sort).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("study-data").textContent);
  var SHOWN_ROWS = 2000; // rows drawn at once; the filters reach every row
  var C = {}; // column name -> position in a row
  data.columns.forEach(function (name, i) { C[name] = i; });

  document.querySelectorAll("img[data-picture]").forEach(function (img) {
    img.src = data.pictures[img.getAttribute("data-picture")];
  });

  document.querySelectorAll("button.example").forEach(function (button) {
    button.addEventListener("click", function () {
      var block = button.closest(".class");
      var panel = document.getElementById("pairs-" + button.getAttribute("data-train"));
      var opening = panel.hidden;
      block.querySelectorAll(".pairs").forEach(function (other) { other.hidden = true; });
      block.querySelectorAll("button.example").forEach(function (other) { other.setAttribute("aria-expanded", "false"); });
      panel.hidden = !opening;
      button.setAttribute("aria-expanded", String(opening));
    });
  });

  function number(value, digits) { return value === null ? "–" : value.toFixed(digits); }
  function qValue(value) { return value === null ? "–" : (value >= 0.001 ? value.toFixed(3) : value.toExponential(1)); }
  function interval(low, high) { return low === null ? "–" : "[" + low.toFixed(2) + ", " + high.toFixed(2) + "]"; }

  // each shown column: its text, and the row position it sorts by
  var COLUMNS = [
    [function (r) { return r[C.kind]; }, C.kind],
    [function (r) { return r[C["class"]]; }, C["class"]],
    [function (r) { return "#" + r[C.train]; }, C.train],
    [function (r) { return r[C.test] === null ? "" : "#" + r[C.test]; }, C.test],
    [function (r) { return number(r[C.mem], 2); }, C.mem],
    [function (r) { return interval(r[C.mem_lo], r[C.mem_hi]); }, C.mem_lo],
    [function (r) { return qValue(r[C.mem_q]); }, C.mem_q],
    [function (r) { return number(r[C.infl], 2); }, C.infl],
    [function (r) { return interval(r[C.infl_lo], r[C.infl_hi]); }, C.infl_lo],
    [function (r) { return qValue(r[C.q]); }, C.q],
    [function (r) { return r[C.reported] ? "yes" : "no"; }, C.reported]
  ];
  var sortBy = { position: C.mem, direction: -1 };
  var body = document.querySelector("#items tbody");
  var filters = {
    klass: document.getElementById("filter-class"),
    kind: document.getElementById("filter-kind"),
    mem: document.getElementById("filter-mem"),
    infl: document.getElementById("filter-infl"),
    reported: document.getElementById("filter-reported")
  };

  function atLeast(input, value) {
    if (input.value === "") { return true; }
    return value !== null && value >= parseFloat(input.value);
  }

  function keep(r) {
    return (filters.klass.value === "" || r[C["class"]] === filters.klass.value) &&
      (filters.kind.value === "" || r[C.kind] === filters.kind.value) &&
      atLeast(filters.mem, r[C.mem]) && atLeast(filters.infl, r[C.infl]) &&
      (!filters.reported.checked || r[C.reported]);
  }

  function compare(a, b) {
    var x = a[sortBy.position], y = b[sortBy.position];
    if (x === y) { return 0; }
    if (x === null) { return 1; } // missing values last, either way
    if (y === null) { return -1; }
    return (x < y ? -1 : 1) * sortBy.direction;
  }

  function draw() {
    var rows = data.rows.filter(keep).sort(compare);
    var fragment = document.createDocumentFragment();
    rows.slice(0, SHOWN_ROWS).forEach(function (r) {
      var tr = document.createElement("tr");
      COLUMNS.forEach(function (column, i) {
        var td = document.createElement("td");
        td.textContent = column[0](r);
        if (i >= 2 && i <= 9) { td.className = "n"; }
        tr.appendChild(td);
      });
      fragment.appendChild(tr);
    });
    body.replaceChildren(fragment);
    document.getElementById("table-count").textContent = rows.length + " of " + data.rows.length + " rows" +
      (rows.length > SHOWN_ROWS ? " (the first " + SHOWN_ROWS + " shown: narrow the filters for the rest)" : "");
  }

  document.querySelectorAll("#items th").forEach(function (th) {
    th.addEventListener("click", function () {
      var position = COLUMNS[parseInt(th.getAttribute("data-column"), 10)][1];
      sortBy = { position: position, direction: sortBy.position === position ? -sortBy.direction : -1 };
      document.querySelectorAll("#items th").forEach(function (other) { other.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", sortBy.direction > 0 ? "ascending" : "descending");
      draw();
    });
  });
  Object.keys(filters).forEach(function (name) { filters[name].addEventListener("input", draw); });
  filters.reported.addEventListener("change", draw);
  draw();
})();
