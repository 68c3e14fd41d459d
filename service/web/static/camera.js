// imgclf page, the camera of Play and Teach: start it into a <video>, grab a frame as a JPEG, stop it.

// Why this page can get no camera at all, or "" when it may ask for one.
export function cameraMissing() {
  return navigator.mediaDevices && navigator.mediaDevices.getUserMedia
    ? "" : "This browser gives no camera to this page (it needs https or localhost).";
}

// What to tell the user when startCamera() is refused.
export function cameraError(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "Camera permission was refused. Allow the camera for this site in your browser's "
        + "settings, then press Start camera again.";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect one and press Start camera again, or upload photos in Try it.";
    case "NotReadableError":
    case "TrackStartError":
      return "The camera is busy in another application. Close it there and press Start camera again.";
    default:
      return `The camera could not start: ${(err && err.message) || err}`;
  }
}

// Shows the camera (getUserMedia's `constraints`) in `video`, resolved once there is a first frame, so a
// grab never comes before a picture; the video is then marked data-live. Rejects as getUserMedia does.
export async function startCamera(video, constraints) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: constraints, audio: false });
  video.srcObject = stream;
  const firstFrame = new Promise((resolve) => video.addEventListener("loadeddata", resolve, { once: true }));
  try {
    await video.play();
  } catch {
    // autoplay of a muted stream is allowed; a refusal here only delays the first frame
  }
  if (!video.videoWidth) await firstFrame;
  video.dataset.live = "true";
  return stream;
}

// The picture in `video` now, as a JPEG blob; null while it has none.
export function grabFrame(video) {
  if (!video.videoWidth) return Promise.resolve(null);
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

// Turns the camera off (the browser's "in use" light too) and empties `video`.
export function stopCamera(video) {
  if (video.srcObject) video.srcObject.getTracks().forEach((track) => track.stop());
  video.srcObject = null;
  delete video.dataset.live;
}
