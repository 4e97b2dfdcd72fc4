"use strict";
// CommonJS consumer of the installed package (see body.cjs).
const streamcast = require("streamcast");
const smoke = require("./body.cjs");

smoke(streamcast, "cjs").catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
