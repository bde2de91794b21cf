// How both pages print a probability: never "100.0 %", "0.0 %", "1.000" or "0.000", since a model
// is not certain (the rule of cxr.numbers, which the reports and the command line use). A number
// and its "%" (or its "<", ">") are joined by a no-break space, so a line never ends between them.
const percent = (p) => { const v = Math.round(1000 * p) / 10; return v >= 100 ? ">\u00a099.9\u00a0%" : v <= 0 ? "<\u00a00.1\u00a0%" : v.toFixed(1) + "\u00a0%"; };
const fraction = (p) => p >= 0.9995 ? ">\u00a00.999" : p < 0.0005 ? "<\u00a00.001" : p.toFixed(3);
// the same joins in a sentence the server wrote ("P(PNEUMONIA) > 99.9 %")
const unbroken = (text) => text.replace(/(\d) %/g, "$1\u00a0%").replace(/([<>≤≥]) (\d)/g, "$1\u00a0$2");
