// How both pages print a probability: never "100.0 %", "0.0 %", "1.000" or "0.000", since a model
// is not certain (the rule of cxr.numbers, which the reports and the command line use).
const percent = (p) => { const v = Math.round(1000 * p) / 10; return v >= 100 ? "> 99.9 %" : v <= 0 ? "< 0.1 %" : v.toFixed(1) + " %"; };
const fraction = (p) => p >= 0.9995 ? "> 0.999" : p < 0.0005 ? "< 0.001" : p.toFixed(3);
