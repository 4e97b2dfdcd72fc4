// ESM consumer of the installed package (see body.cjs).
import { getStreamsClient, StreamsClient } from "streamcast";
import smoke from "./body.cjs";

await smoke({ getStreamsClient, StreamsClient }, "esm");
