# Ruby's Net::HTTP: uploads BODY to URL RUNS times, one after the other; it sends the
# whole body before it reads. Prints "<run> <status> <seconds>" per upload and writes
# the answer's body to OUTDIR/<run>, or prints "<run> ERR <what>".
#
# Usage: ruby upload.rb URL BODY OUTDIR RUNS
require "net/http"

url, body_path, out, runs = ARGV
uri = URI(url)
body = File.binread(body_path)
runs.to_i.times do |run|
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  begin
    res = Net::HTTP.start(uri.host, uri.port, open_timeout: 30, read_timeout: 30,
                                              write_timeout: 30) do |http|
      http.post(uri.path, body, "Content-Type" => "application/octet-stream")
    end
    took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
    File.binwrite("#{out}/#{run}", res.body || "")
    puts "#{run} #{res.code} #{took}"
  rescue StandardError => e
    puts "#{run} ERR #{e.class}: #{e.message.tr("\n", " ")}"
  end
  $stdout.flush
end
