// Java's two HTTP clients: uploads BODY to URL RUNS times, one after the other, with
// java.net.http.HttpClient (HTTP/1.1) or java.net.HttpURLConnection (fixed-length
// streaming); both send the whole body before they read the answer. Prints "<run> <status>
// <seconds>" per upload and writes the answer's body to OUTDIR/<run>, or prints "<run>
// ERR <what>".
//
// Usage: java Upload.java httpclient|urlconnection URL BODY OUTDIR RUNS

import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

public class Upload {
    public static void main(String[] args) throws Exception {
        String lib = args[0], url = args[1], out = args[3];
        byte[] body = Files.readAllBytes(Path.of(args[2]));
        int runs = Integer.parseInt(args[4]);
        for (int run = 0; run < runs; run++) {
            long start = System.nanoTime();
            try {
                int status;
                byte[] got;
                if (lib.equals("httpclient")) {
                    HttpClient c = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                            .connectTimeout(Duration.ofSeconds(30)).build();
                    HttpRequest req = HttpRequest.newBuilder(URI.create(url))
                            .timeout(Duration.ofSeconds(30))
                            .POST(HttpRequest.BodyPublishers.ofByteArray(body)).build();
                    HttpResponse<byte[]> r = c.send(req, HttpResponse.BodyHandlers.ofByteArray());
                    status = r.statusCode();
                    got = r.body();
                } else {
                    HttpURLConnection c = (HttpURLConnection) URI.create(url).toURL().openConnection();
                    c.setDoOutput(true);
                    c.setRequestMethod("POST");
                    c.setFixedLengthStreamingMode(body.length);
                    c.setConnectTimeout(30000);
                    c.setReadTimeout(30000);
                    try (OutputStream o = c.getOutputStream()) {
                        o.write(body);
                    }
                    status = c.getResponseCode();
                    try (InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream()) {
                        got = in.readAllBytes();
                    }
                }
                double took = (System.nanoTime() - start) / 1e9;
                Files.write(Path.of(out, Integer.toString(run)), got);
                System.out.println(run + " " + status + " " + took);
            } catch (Exception e) {
                System.out.println(run + " ERR " + e.toString().replace('\n', ' '));
            }
        }
    }
}
